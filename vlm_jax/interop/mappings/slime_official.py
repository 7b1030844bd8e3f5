"""SliME's official checkpoints (``yfzhang114/SliME``, spec/methods.md §6): the original LLaVA layout
(:mod:`.llava_original`) with ``mm_projector_type: gated`` and a ``TextGuidedSampler``.

Key names, read from the official ``llava/model/multimodal_projector/builder.py`` (``GatedBlock``) and
``multimodal_resampler/{sampler,builder}.py`` (the spec and the issue name the modules; the keys below them are
the code's): ``mm_projector.projection.{0,2}`` (the shared ``mlp2x_gelu`` expert, our ``slime/projector/mlp``),
``mm_projector.attn.*`` (the 576-query ``Resampler``: ``query``, ``attn.in_proj_weight`` / ``in_proj_bias`` with q,
k, v packed row-wise, ``attn.out_proj``, ``ln_q`` / ``ln_kv`` / ``ln_post``), ``mm_projector.w_gate`` /
``w_noise`` ``[Dv, 2]``, ``sampler.post_qformer.*`` (the 144-query local ``Resampler``). Read past: the fixed
sin-cos tables ``*.pos_embed`` (float16, never trained: we recompute them) and ``GatedBlock``'s ``mean`` / ``std``
buffers (the constants 0 and 1 of its ``Normal``).

Config: ``mm_resampler_dim`` (local queries, 144), ``mm_resampler_topp``, ``mm_resampler_temp``,
``mm_learnable_gated`` (-1 gated, 0 / 1 one expert), ``mm_resampler_type`` (``cosine`` only), heads
``mm_hidden_size // 128`` and the separator = the LLM embedding of token ``seperator`` (sic, default 1919) as the code
does. The code's global resampler has 576 queries and its gate needs one per patch of the global view, so the
global grid is the ViT's patch grid. Views: the global view first, ≤ 7 slices (UHD grid). Import only.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

from vlm_jax.hires.slime.config import SlimeConfig
from vlm_jax.interop.family import VLMFamily
from vlm_jax.interop.key_mapping import KeyMapping, linear, norm, packed_projections_in, projection_out, rule, table
from vlm_jax.interop.mappings import llava_original

MAX_SLICES = 7  # ``select_best_resolution_uhd``: at most 7 slices (spec §6.2)
READ_PAST = (r"mm_projector\.(mean|std)", r"(mm_projector\.attn|sampler\.post_qformer)\.pos_embed")


def claims(hf_config: Mapping[str, Any], tensor_names: Collection[str] = ()) -> bool:
    return llava_original.claims(hf_config) and hf_config.get("mm_projector_type") == "gated"


def resampler_keys(dim: int, heads: int) -> KeyMapping:
    """The official ``Resampler`` (``kv_proj`` and ``proj`` are identities: no tensors)."""
    qkv = tuple(f"attn/{n}" for n in "qkv")
    return table(rule("query", "query"),
                 packed_projections_in(qkv, "attn.in_proj_weight", "attn.in_proj_bias", dim // heads, dim),
                 projection_out("attn/out", "attn.out_proj", dim // heads),
                 *(norm(n, n) for n in ("ln_q", "ln_kv", "ln_post")))


def mlp_keys(projector: str) -> KeyMapping:
    return table(linear(f"{projector}/linear_1", "mm_projector.projection.0"),
                 linear(f"{projector}/linear_2", "mm_projector.projection.2"), ignored=READ_PAST)


def module_keys(cfg: Any) -> KeyMapping:
    """The gate and both resamplers of a model whose ``slime`` is configured."""
    if cfg.slime is None:
        return KeyMapping(())
    resampler = resampler_keys(cfg.vision.hidden, cfg.slime.num_heads)
    return (resampler.nest("slime/projector/resampler/", "mm_projector.attn.")
            + table(rule("slime/projector/w_gate", "mm_projector.w_gate"),
                    rule("slime/projector/w_noise", "mm_projector.w_noise"))
            + resampler.nest("slime/sampler/", "sampler.post_qformer."))


def _grid(value: int, what: str) -> int:
    side = math.isqrt(value)
    if side * side != value:
        raise ValueError(f"{what}={value} is not a square number of queries")
    return side


def read_config(hf_config: Mapping[str, Any], vision_overrides: Mapping[str, Any],
                llm_overrides: Mapping[str, Any]) -> dict[str, Any]:
    d = {k: v for k, v in hf_config.items() if v is not None}
    llava_original.check_projector(d, "gated")
    if d.get("mm_resampler_type", "cosine") != "cosine":
        raise ValueError(f"SliME mm_resampler_type={d['mm_resampler_type']!r}: only the released 'cosine' "
                         "selection is supported")
    if "unpad" in d.get("mm_patch_merge_type", ""):
        raise ValueError(f"SliME mm_patch_merge_type={d['mm_patch_merge_type']!r}: SliME has no newline tokens")
    fields = llava_original.read_towers(d, vision_overrides, llm_overrides)
    vision = fields["vision"]
    heads = vision.hidden // 128
    if heads < 1:
        raise ValueError(f"SliME resamplers have mm_hidden_size // 128 heads: {vision.hidden} gives none")
    slime = SlimeConfig(global_grid=vision.image_size // vision.patch,
                        local_grid=_grid(int(d.get("mm_resampler_dim", 144)), "mm_resampler_dim"), num_heads=heads,
                        expert=int(d.get("mm_learnable_gated", -1)), top_p=float(d.get("mm_resampler_topp", 0.95)),
                        temperature=float(d.get("mm_resampler_temp", 1.0)), separator="token",
                        separator_token_id=int(d.get("seperator", 1919)))
    return dict(fields, slime=slime, max_views=1 + MAX_SLICES, global_view="first")


FAMILY = VLMFamily("slime", read_config, mlp_keys, rename=llava_original.rename, vision_family="clip",
                   claims=claims, module_keys=module_keys)
