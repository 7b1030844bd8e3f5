"""vlm_jax: high-resolution vision-language models in JAX/Flax NNX.

Importing the package imports no flax: host code (tiling, the data pipeline, configs) stays light in every
Grain worker. The model side starts at :mod:`vlm_jax.nn`.
"""

__version__ = "0.1.0"
