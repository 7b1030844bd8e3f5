"""INF-LLaVA's official checkpoints (``WeihuangLin/INF-LLaVA``, spec/methods.md §5.2): the original LLaVA layout
(:mod:`.llava_original`) plus the DEM as ``model.spatial_embed.*`` (``SpatialEmbed``, hard-coded to 8 heads and
``channel // 16`` FFN bottlenecks, one attention module for both directions).

Key names, read from the official ``INF_llava/model/llava_arch.py`` (the spec names the modules, not the keys):
``spatial_embed.attention.linears.{0,1,2,3}`` (q, k, v, out ``Linear(D, D)``; the Annotated Transformer's
``clones(..., 4)``), ``spatial_embed.attention.ln`` (the post-norm on ``out + query``), ``spatial_embed.ffn_crop.{0,2}``
(on the local-query output, our ``fuse_local``), ``spatial_embed.ffn_stride.{0,2}`` (on the global-query output,
our ``fuse_global``), ``spatial_embed.ln_fuse``. The config is an original LLaVA one; the family is recognised by
its ``model.spatial_embed.*`` tensors. The official code crops an n = 3 grid: 2·3² + 1 = 19 views, low-res view
last. Import only.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from vlm_jax.hires.dual_perspective import DEMConfig
from vlm_jax.interop.family import VLMFamily
from vlm_jax.interop.key_mapping import KeyMapping, linear, norm, projection_in, projection_out, table
from vlm_jax.interop.mappings import llava_original

GRID = 3  # n of the official ``encode_images``
# ``MultiHeadedAttention(8, channel)``, ``Linear(channel, channel // 16)``
OFFICIAL_DEM = DEMConfig(heads=8, ffn_ratio=16)


def dem_keys(head_dim: int) -> KeyMapping:
    """``SpatialEmbed`` ↔ our :class:`~vlm_jax.hires.dual_perspective.DualPerspectiveEnhancement` at ``dem/``."""
    attention = table(*(projection_in(f"attn/{n}", f"linears.{i}", head_dim) for i, n in enumerate("qkv")),
                      projection_out("attn/out", "linears.3", head_dim), norm("norm", "ln"))
    return table(linear("fuse_local/fc1", "ffn_crop.0"), linear("fuse_local/fc2", "ffn_crop.2"),
                 linear("fuse_global/fc1", "ffn_stride.0"), linear("fuse_global/fc2", "ffn_stride.2"),
                 norm("fuse_norm", "ln_fuse")) + attention.nest("attention/", "attention.")


def claims(hf_config: Mapping[str, Any], tensor_names: Collection[str]) -> bool:
    return llava_original.claims(hf_config) and any(k.startswith("model.spatial_embed.") for k in tensor_names)


def read_config(hf_config: Mapping[str, Any], vision_overrides: Mapping[str, Any],
                llm_overrides: Mapping[str, Any]) -> dict[str, Any]:
    fields = llava_original.read_config(hf_config, vision_overrides, llm_overrides)
    return dict(fields, dem=OFFICIAL_DEM, max_views=2 * GRID ** 2 + 1, global_view="last")


def module_keys(cfg: Any) -> KeyMapping:
    """The DEM of a model whose ``dem`` is configured (``cfg.vision.hidden`` wide)."""
    if cfg.dem is None:
        return KeyMapping(())
    return dem_keys(cfg.vision.hidden // cfg.dem.heads).nest("dem/", "spatial_embed.")


FAMILY = VLMFamily("inf_llava", read_config, llava_original.keys, rename=llava_original.rename, vision_family="clip",
                   claims=claims, module_keys=module_keys)
