"""vlm_jax.hires"""
