"""vlm_jax.evaluate"""
