"""Shared layers: dense/embedding/norms, the attention entry point, stacked (scanned) layers.

Every NNX module of the project imports from here, so this is where flax is configured: parameters are
created abstractly (``nnx.eval_shape``) and materialised under ``jax.jit(out_shardings=...)``; flax's eager
variable sharding would demand a mesh at creation.
"""

from flax import nnx as _nnx

_nnx.use_eager_sharding(False)
