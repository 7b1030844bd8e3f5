"""vlm_jax.train"""
