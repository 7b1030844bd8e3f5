"""SliME ("Beyond LLaVA-HD", arXiv 2406.08487) visual connector, spec/methods.md §6."""

from vlm_jax.hires.slime.config import ResamplerConfig, SlimeConfig
from vlm_jax.hires.slime.connector import (
                                           SlimeConnector,
                                           num_image_slots,
                                           num_visual_tokens_capacity,
                                           raster_local_tokens,
)
from vlm_jax.hires.slime.gated_adapter import GatedGlobalAdapter
from vlm_jax.hires.slime.resampler import Resampler
from vlm_jax.hires.slime.selection import compact, selection_scores, top_p_keep

__all__ = ["GatedGlobalAdapter", "Resampler", "ResamplerConfig", "SlimeConfig", "SlimeConnector", "compact",
           "num_image_slots", "num_visual_tokens_capacity", "raster_local_tokens", "selection_scores",
           "top_p_keep"]
