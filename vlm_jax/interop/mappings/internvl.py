"""InternVL as transformers implements it (``InternVLForConditionalGeneration`` / ``internvl``, the
InternVL3-*-hf checkpoints): InternViT, pixel shuffle + ``multi_modal_projector.{layer_norm,linear_1,linear_2}``,
Qwen2 decoder with tied embeddings; tiles are flat, the tile budget is a processor setting."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from vlm_jax.interop.key_mapping import KeyMapping, norm, table
from vlm_jax.interop.mappings import llava
from vlm_jax.interop.mappings.transformers_vlm import transformers_family
from vlm_jax.model_config import VLMConfig
from vlm_jax.projectors import ProjectorConfig
from vlm_jax.vision.config import ViTConfig

MAX_VIEWS = 13  # 12 tiles + thumbnail (InternVL's max_num=12)
# transformers 5 ``InternVLConfig`` defaults of the fields we read
DEFAULTS = dict(vision_feature_layer=-1, vision_feature_select_strategy="default", projector_hidden_act="gelu",
                tie_word_embeddings=True, image_token_id=151667, downsample_ratio=0.5,
                vision_model_type="internvl_vision", text_model_type="qwen2")


def keys(projector: str) -> KeyMapping:
    return table(norm(f"{projector}/layer_norm", "multi_modal_projector.layer_norm")) + llava.mlp_keys(projector)


def read(d: Mapping[str, Any], vision: ViTConfig, act: str) -> dict[str, Any]:
    return dict(projector=ProjectorConfig(kind="internvl", act=act, downsample=float(d["downsample_ratio"])),
                layout="flat", max_views=MAX_VIEWS)


def write(cfg: VLMConfig, pinpoints: Sequence[Sequence[int]] | None) -> dict[str, Any]:
    return dict(downsample_ratio=cfg.projector.downsample)


FAMILY = transformers_family(
    "internvl", "InternVLForConditionalGeneration", defaults=DEFAULTS, image_token_key="image_token_id",
    connector_keys=keys, read=read, write=write, matches=lambda cfg: cfg.projector.kind == "internvl")
