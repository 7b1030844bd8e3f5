"""LLaVA-NeXT (``LlavaNextForConditionalGeneration`` / ``llava_next``): LLaVA plus anyres tiling over
``image_grid_pinpoints`` with unpadding and the learned ``image_newline [D]``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from vlm_jax.interop.key_mapping import KeyMapping, rule, table
from vlm_jax.interop.mappings import llava
from vlm_jax.interop.mappings.transformers_vlm import transformers_family
from vlm_jax.model_config import VLMConfig
from vlm_jax.presets import LLAVA_NEXT_PINPOINTS
from vlm_jax.vision.config import ViTConfig

DEFAULTS = dict(llava.DEFAULTS, image_grid_pinpoints=LLAVA_NEXT_PINPOINTS)  # 1.6's, for a 336 px tower


def default_pinpoints(image_size: int) -> list[list[int]]:
    """The LLaVA-NeXT 1.6 pinpoints scaled from 336 px to ``image_size`` (``[[t, 2t], [2t, t], [2t, 2t], …]``)."""
    return [[h // 336 * image_size, w // 336 * image_size] for h, w in LLAVA_NEXT_PINPOINTS]


def max_views(pinpoints: Sequence[Sequence[int]], tile: int) -> int:
    """``1 + max tiles`` over ``image_grid_pinpoints`` (``[[H, W], …]``, multiples of ``tile``)."""
    tiles = []
    for h, w in pinpoints:
        if h % tile or w % tile:
            raise ValueError(f"image_grid_pinpoint {[h, w]} is not a multiple of the vision image_size {tile}")
        tiles.append((h // tile) * (w // tile))
    return 1 + max(tiles)


def keys(projector: str) -> KeyMapping:
    return llava.mlp_keys(projector) + table(rule("image_newline", "image_newline"))


def read(d: Mapping[str, Any], vision: ViTConfig, act: str) -> dict[str, Any]:
    if d["vision_feature_select_strategy"] == "full":
        raise ValueError("llava_next with vision_feature_select_strategy='full' is not supported (HF packing "
                         "assumes a square patch map per view)")
    return dict(llava.read(d, vision, act), layout="anyres", global_view="first",
                max_views=max_views(d["image_grid_pinpoints"], vision.image_size))


def write(cfg: VLMConfig, pinpoints: Sequence[Sequence[int]] | None) -> dict[str, Any]:
    pinpoints = pinpoints or default_pinpoints(cfg.vision.image_size)
    return dict(llava.write(cfg, pinpoints), image_grid_pinpoints=[[int(h), int(w)] for h, w in pinpoints])


FAMILY = transformers_family(
    "llava_next", "LlavaNextForConditionalGeneration", defaults=DEFAULTS, image_token_key="image_token_index",
    connector_keys=keys, read=read, write=write, tie_in_text_config=True,
    matches=lambda cfg: cfg.projector.kind == "mlp2x_gelu" and cfg.layout == "anyres")
