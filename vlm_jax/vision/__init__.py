"""vlm_jax.vision"""
