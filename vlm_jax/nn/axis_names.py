"""Logical axis names of the shared blocks (:mod:`vlm_jax.nn.multi_head`, :mod:`vlm_jax.nn.mlp`), one set per
family of modules; ``vlm_jax.sharding.LOGICAL_AXIS_RULES`` maps every name to mesh axes."""

from __future__ import annotations

import dataclasses

ActAxes = tuple[str | None, ...]


@dataclasses.dataclass(frozen=True)
class AxisNames:
    """Parameter axis names (``embed``: residual width, ``heads`` / ``kv_heads`` / ``head_dim``: attention
    kernels, ``mlp``: hidden width of an MLP) and optional activation names for the attention's queries /
    outputs ``[B, T, H, Dh]`` and keys / values ``[B, S, K, Dh]`` (None: not constrained)."""

    embed: str
    heads: str
    kv_heads: str
    head_dim: str | None
    mlp: str
    act_queries: ActAxes | None = None
    act_keys: ActAxes | None = None


VIT_AXES = AxisNames("vit_embed", "vit_heads", "vit_heads", "vit_head_dim", "vit_mlp")
"""The vision tower and the adapters that run inside it (SliceRestore, Self-Mining)."""

LM_AXES = AxisNames("embed", "heads", "kv_heads", "head_dim", "mlp",
                    act_queries=("act_batch", "act_len", "act_heads", None),
                    act_keys=("act_batch", "act_len", "act_kv_heads", None))
"""The decoder LLM (heads split over ``tensor``; activations constrained)."""

ADAPTER_AXES = AxisNames("adapter_embed", "adapter_mlp", "adapter_mlp", None, "adapter_mlp")
"""The papers' modules on ViT features (GSWA, DEM, SliME's resamplers)."""
