"""vlm_jax: high-resolution vision-language models in JAX/Flax NNX."""

from flax import nnx as _nnx

# Parameters are created abstractly (``nnx.eval_shape``) and materialised under
# ``jax.jit(out_shardings=...)``; flax's eager variable sharding would demand a mesh at creation.
_nnx.use_eager_sharding(False)

__version__ = "0.1.0"
