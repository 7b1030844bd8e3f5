"""InternVL's released layout (``InternVLChatModel`` / ``internvl_chat`` remote code: InternVL2-2B and the
SleighVL checkpoints built on it): ``vision_model.*`` (InternViT, :mod:`.intern_vit`), ``mlp1.*`` and
``language_model.*`` (InternLM2 with the packed ``wqkv``, or Llama / Qwen2).

``mlp1`` is ``Sequential(LayerNorm, Linear, GELU, Linear)``: ``mlp1.0`` / ``mlp1.1`` / ``mlp1.3``, fed by the
pixel shuffle of ``ps_version="v2"`` (``v1`` leaves the token grid transposed: refused). The config holds
``select_layer`` (CLS always dropped), ``downsample_ratio``, the tile budget (``max_dynamic_patch`` +
thumbnail) and ``vision_config`` / ``llm_config``; the image placeholder (``<IMG_CONTEXT>``) id is a tokenizer
setting, so it must be passed as ``image_token_id=``. Import only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vlm_jax.interop.family import VLMFamily
from vlm_jax.interop.key_mapping import KeyMapping, linear, norm, table
from vlm_jax.interop.mappings.towers import VISION, lm_config, vit_config
from vlm_jax.projectors import ProjectorConfig


def keys(projector: str) -> KeyMapping:
    return table(norm(f"{projector}/layer_norm", "mlp1.0"), linear(f"{projector}/linear_1", "mlp1.1"),
                 linear(f"{projector}/linear_2", "mlp1.3"))


def read_config(hf_config: Mapping[str, Any], vision_overrides: Mapping[str, Any],
                llm_overrides: Mapping[str, Any]) -> dict[str, Any]:
    d = {k: v for k, v in hf_config.items() if v is not None}
    if d.get("ps_version", "v1") != "v2":
        raise ValueError(f"internvl_chat ps_version={d.get('ps_version', 'v1')!r}: only 'v2' (the pixel shuffle "
                         "that keeps the token grid upright) is supported")
    for lora in ("use_backbone_lora", "use_llm_lora"):
        if d.get(lora, 0):
            raise ValueError(f"internvl_chat {lora}={d[lora]}: merge the LoRA weights before importing")
    vision = vit_config(VISION["intern_vit"], d["vision_config"], **vision_overrides)
    if d.get("force_image_size", vision.image_size) != vision.image_size:
        raise ValueError(f"internvl_chat force_image_size={d['force_image_size']} differs from the vision tower's "
                         f"image_size={vision.image_size}; resize the position embeddings first")
    tiles = int(d.get("max_dynamic_patch", 6)) if d.get("dynamic_image_size", False) else 1
    thumbnail = tiles > 1 and bool(d.get("use_thumbnail", False))
    projector = ProjectorConfig(kind="internvl", act="gelu", downsample=float(d.get("downsample_ratio", 0.5)))
    return dict(vision=vision, llm=lm_config(d["llm_config"], **llm_overrides), projector=projector,
                select_layer=int(d.get("select_layer", -1)), keep_cls=False, layout="flat",
                max_views=tiles + thumbnail, global_view="last" if thumbnail else "none")


FAMILY = VLMFamily("internvl_chat", read_config, keys, rename=lambda key: key, vision_prefix="vision_model.",
                   vision_family="intern_vit")
