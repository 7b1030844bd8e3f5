"""Model state outside training: abstract (shape, dtype, sharding) parameters of a model config, Orbax
checkpoints and their restore for inference. Imports neither :mod:`vlm_jax.train` nor :mod:`vlm_jax.evaluate`,
so both can use it (the trainer imports the evaluation harness, never the reverse)."""
