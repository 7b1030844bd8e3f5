"""vlm_jax.interop"""
