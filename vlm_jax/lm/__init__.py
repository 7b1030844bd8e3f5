"""vlm_jax.lm"""
