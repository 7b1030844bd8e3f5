"""vlm_jax.tiling"""
