"""Vision towers: ViT encoders for the CLIP, SigLIP and InternViT families (config, layers, model); the
position-embedding resize is ``vlm_jax.nn.posemb``."""

from vlm_jax.vision.config import ViTConfig, clip_l14_336, internvit_300m_448, siglip_so400m_14_384
from vlm_jax.vision.vit import VisionOutput, ViT

__all__ = ["ViT", "ViTConfig", "VisionOutput", "clip_l14_336", "internvit_300m_448", "siglip_so400m_14_384"]
