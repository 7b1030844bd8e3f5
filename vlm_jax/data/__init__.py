"""vlm_jax.data"""
