"""The original LLaVA layout (``haotian-liu/LLaVA``, ``LlavaLlamaForCausalLM`` / ``llava_llama``; the
``liuhaotian/llava-v1.5-*`` checkpoints and the papers' LLaVA-based releases).

Keys: ``model.vision_tower.vision_tower.vision_model.*`` (CLIP, named as ``CLIPVisionModel``'s),
``model.mm_projector.{0,2}.*`` (``Sequential(Linear, GELU, Linear)``), the Llama decoder at the top level
(``model.embed_tokens``, ``model.layers.{i}.*``, ``model.norm``, ``lm_head``). The released LLaVA-1.5 checkpoints
do not store the vision tower (it is read from ``mm_vision_tower`` at run time): load it from its own directory
(:func:`vlm_jax.interop.tower_init.init_towers`).

The config is a flat Llama ``config.json`` plus the ``mm_*`` fields: ``mm_vision_tower`` (a CLIP name or a
local directory; its config gives the vision tower: :func:`clip_config`), ``mm_hidden_size``,
``mm_projector_type`` (``mlp2x_gelu`` only), ``mm_vision_select_layer``, ``mm_vision_select_feature``
(``patch``: CLS dropped; ``cls_patch``: kept), ``mm_patch_merge_type`` (``flat`` only), ``mm_use_im_start_end``
and ``mm_use_im_patch_token`` (both must be off: extra image tokens are not implemented). The image placeholder is
``IMAGE_TOKEN_INDEX = -200`` in the original code, not a vocabulary id: pass ``image_token_id=``. Import only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from typing import Any

from vlm_jax.interop.family import VLMFamily
from vlm_jax.interop.key_mapping import KeyMapping, linear, table
from vlm_jax.interop.mappings.towers import VISION, lm_config, vit_config
from vlm_jax.projectors import ProjectorConfig

MODEL_TYPE = "llava_llama"
# the vision towers the released checkpoints name in ``mm_vision_tower`` (``CLIPVisionConfig`` of the hub configs)
CLIP_L14 = dict(model_type="clip_vision_model", hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                num_attention_heads=16, patch_size=14, hidden_act="quick_gelu", layer_norm_eps=1e-5, num_channels=3)
KNOWN_TOWERS = {"openai/clip-vit-large-patch14-336": dict(CLIP_L14, image_size=336),
                "openai/clip-vit-large-patch14": dict(CLIP_L14, image_size=224)}
SELECT_FEATURES = {"patch": False, "cls_patch": True}  # mm_vision_select_feature → our keep_cls
# the vision tower and the connector modules (LLaVA's and the papers' official ones) leave the LLM's ``model.``
RENAMES = (("model.vision_tower.vision_tower.vision_model.", "vision_tower."),
           *((f"model.{m}", m) for m in ("mm_projector.", "spatial_embed.", "sampler.", "image_newline")))


def rename(key: str) -> str:
    """Original key → the canonical form the tower tables read under ``vision_tower.`` / ``language_model.``."""
    for theirs, canonical in RENAMES:
        if key.startswith(theirs):
            return canonical + key[len(theirs):]
    return "language_model." + key


def claims(hf_config: Mapping[str, Any], tensor_names: Collection[str] = ()) -> bool:
    """An original-layout config (``model_type`` ``llava_llama``, or ``llava`` with ``mm_*`` fields and no
    ``vision_config``); the papers' official checkpoints built on it are claimed by their own families first."""
    return hf_config.get("model_type") == MODEL_TYPE or ("mm_vision_tower" in hf_config
                                                          and "vision_config" not in hf_config)


def keys(projector: str) -> KeyMapping:
    return table(linear(f"{projector}/linear_1", "mm_projector.0"), linear(f"{projector}/linear_2", "mm_projector.2"),
                 ignored=(r"vision_tower\.embeddings\.position_ids",))  # a buffer old transformers saved


def clip_config(tower: str) -> dict[str, Any]:
    """The HF vision config of ``mm_vision_tower``: a local directory's ``config.json`` (``CLIPVisionModel`` or
    ``CLIPModel``), else the hub config of a known name (:data:`KNOWN_TOWERS`)."""
    path = os.path.join(tower, "config.json")
    if os.path.isfile(path):
        with open(path) as f:
            d = json.load(f)
        return dict(d.get("vision_config") or d, model_type="clip_vision_model")
    if tower in KNOWN_TOWERS:
        return KNOWN_TOWERS[tower]
    raise ValueError(f"mm_vision_tower={tower!r} is neither a local directory with a config.json nor one of "
                     f"{sorted(KNOWN_TOWERS)}: set it to the CLIP directory's path")


def check_projector(d: Mapping[str, Any], supported: str) -> None:
    if d.get("mm_projector_type", "linear") != supported:
        raise ValueError(f"mm_projector_type={d.get('mm_projector_type', 'linear')!r}: this layout supports "
                         f"{supported!r} only")


def _check_supported(d: Mapping[str, Any]) -> None:
    for flag in ("mm_use_im_start_end", "mm_use_im_patch_token"):
        if d.get(flag, False):
            raise ValueError(f"original LLaVA {flag}=True adds image marker tokens around the image; not supported")
    if d.get("mm_vision_select_feature", "patch") not in SELECT_FEATURES:
        raise ValueError(f"unknown mm_vision_select_feature {d['mm_vision_select_feature']!r}; known: "
                         f"{sorted(SELECT_FEATURES)}")


def read_towers(d: Mapping[str, Any], vision_overrides: Mapping[str, Any],
                llm_overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`VLMConfig` fields of the towers and the feature selection (every original-layout family)."""
    _check_supported(d)
    vision = vit_config(VISION["clip"], clip_config(d["mm_vision_tower"]), **vision_overrides)
    if d.get("mm_hidden_size", vision.hidden) != vision.hidden:
        raise ValueError(f"mm_hidden_size={d['mm_hidden_size']} differs from the vision tower's hidden size "
                         f"{vision.hidden} ({d['mm_vision_tower']})")
    llm = lm_config({**d, "model_type": "llama"}, **llm_overrides)
    return dict(vision=vision, llm=llm, select_layer=int(d.get("mm_vision_select_layer", -1)),
                keep_cls=SELECT_FEATURES[d.get("mm_vision_select_feature", "patch")], layout="flat")


def read_config(hf_config: Mapping[str, Any], vision_overrides: Mapping[str, Any],
                llm_overrides: Mapping[str, Any]) -> dict[str, Any]:
    d = {k: v for k, v in hf_config.items() if v is not None}
    check_projector(d, "mlp2x_gelu")
    if d.get("mm_patch_merge_type", "flat") != "flat" or d.get("image_aspect_ratio") == "anyres":
        raise ValueError(f"original LLaVA mm_patch_merge_type={d.get('mm_patch_merge_type')!r} / image_aspect_ratio="
                         f"{d.get('image_aspect_ratio')!r}: only the flat LLaVA-1.5 layout is supported")
    return dict(read_towers(d, vision_overrides, llm_overrides),
                projector=ProjectorConfig(kind="mlp2x_gelu", act="gelu"), max_views=1, global_view="none")


FAMILY = VLMFamily(MODEL_TYPE, read_config, keys, rename=rename, vision_family="clip", claims=claims)
