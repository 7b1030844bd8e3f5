"""LLaVA-1.5 (``LlavaForConditionalGeneration`` / ``llava``): CLIP (or SigLIP) tower, two-layer GELU MLP
projector ``multi_modal_projector.linear_{1,2}``, Llama decoder; one view per image."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from vlm_jax.interop.key_mapping import KeyMapping, linear, table
from vlm_jax.interop.mappings.transformers_vlm import transformers_family
from vlm_jax.model_config import VLMConfig
from vlm_jax.projectors import ProjectorConfig
from vlm_jax.vision.config import ViTConfig

# transformers 5 ``LlavaConfig`` defaults of the fields we read
DEFAULTS = dict(vision_feature_layer=-2, vision_feature_select_strategy="default", projector_hidden_act="gelu",
                multimodal_projector_bias=True, tie_word_embeddings=False, image_token_index=32000,
                vision_model_type="clip_vision_model", text_model_type="llama")


def mlp_keys(projector: str) -> KeyMapping:
    return table(linear(f"{projector}/linear_1", "multi_modal_projector.linear_1"),
                 linear(f"{projector}/linear_2", "multi_modal_projector.linear_2"))


def read(d: Mapping[str, Any], vision: ViTConfig, act: str) -> dict[str, Any]:
    if not d["multimodal_projector_bias"]:
        raise ValueError("multimodal_projector_bias=False is not supported (our projector Dense layers have biases)")
    return dict(projector=ProjectorConfig(kind="mlp2x_gelu", act=act), layout="flat", max_views=1, global_view="none")


def write(cfg: VLMConfig, pinpoints: Sequence[Sequence[int]] | None) -> dict[str, Any]:
    return dict(multimodal_projector_bias=True)


FAMILY = transformers_family(
    "llava", "LlavaForConditionalGeneration", defaults=DEFAULTS, image_token_key="image_token_index",
    connector_keys=mlp_keys, read=read, write=write, tie_in_text_config=True,
    matches=lambda cfg: cfg.projector.kind == "mlp2x_gelu" and cfg.layout == "flat")
