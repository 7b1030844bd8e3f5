"""Shared blocks: the Einsum projection, the attention module and entry point (with masks and the splash kernel),
transformer block, MLP, embedding/norms, pos-emb resize, RoPE, the precision policy, stacked (scanned) layers.

Every NNX module of the project imports from here, so this is where flax is configured: parameters are
created abstractly (``nnx.eval_shape``) and materialised under ``jax.jit(out_shardings=...)``; flax's eager
variable sharding would demand a mesh at creation.
"""

from flax import nnx as _nnx

_nnx.use_eager_sharding(False)
