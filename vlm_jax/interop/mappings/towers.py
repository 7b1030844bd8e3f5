"""The registries of vision-tower and decoder families, and which family a tower config / checkpoint is."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vlm_jax.interop.checkpoint_io import TensorSource
from vlm_jax.interop.family import TowerFamily
from vlm_jax.interop.mappings import clip, intern_vit, internlm2, internvit, llama, qwen2, siglip
from vlm_jax.lm.config import LMConfig
from vlm_jax.vision.config import ViTConfig

VISION: dict[str, TowerFamily] = {f.name: f for f in (clip.FAMILY, siglip.FAMILY, internvit.FAMILY, intern_vit.FAMILY)}
DECODERS: dict[str, TowerFamily] = {f.name: f for f in (llama.FAMILY, qwen2.FAMILY, internlm2.FAMILY)}


def by_model_type(families: dict[str, TowerFamily], model_type: str, what: str) -> TowerFamily:
    """The family whose HF ``model_type`` is ``model_type``; ``ValueError`` naming the known ones otherwise."""
    known = {f.config.model_type: f for f in families.values()}
    if model_type not in known:
        raise ValueError(f"unsupported {what} model_type {model_type!r}; supported: {sorted(known)}")
    return known[model_type]


def vit_config(family: TowerFamily, hf_config: Mapping[str, Any], **overrides) -> ViTConfig:
    """Our vision config from an HF vision ``config.json`` dict of ``family``; ``overrides`` set our own fields."""
    return ViTConfig.from_dict({**family.config.to_ours(hf_config), **overrides})


def lm_config(hf_config: Mapping[str, Any], **overrides) -> LMConfig:
    """Our decoder config from an HF decoder ``config.json`` dict (family by its ``model_type``)."""
    family = by_model_type(DECODERS, hf_config.get("model_type"), "decoder")
    return LMConfig(**{**family.config.to_ours(hf_config), **overrides})


def vision_family(cfg: ViTConfig) -> TowerFamily:
    """``internvl`` (transformers' InternViT naming) for layer scales, ``clip`` for a CLS token, else ``siglip``
    (the config read-back of an export rejects the flags the chosen family cannot express)."""
    if cfg.layer_scale:
        return VISION["internvl"]
    return VISION["clip" if cfg.cls_token else "siglip"]


def detect_vision_family(source: TensorSource) -> TowerFamily:
    """The vision family of the tower under ``source`` from its marker keys (SigLIP has none of them)."""
    for family in VISION.values():
        if family.marker is not None and family.marker in source:
            return family
    return VISION["siglip"]


def decoder_family(cfg: LMConfig, source: TensorSource | None = None) -> TowerFamily:
    """``internlm2`` when ``source`` is in its layout (the config cannot tell: InternLM2 computes as Llama),
    else ``qwen2`` for q/k/v biases, else ``llama``."""
    internlm2_layout = DECODERS["internlm2"]
    if source is not None and internlm2_layout.marker in source:
        return internlm2_layout
    return DECODERS["qwen2" if cfg.qkv_bias else "llama"]
