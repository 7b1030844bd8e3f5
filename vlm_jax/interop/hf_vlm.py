"""Import Hugging Face LLaVA-1.5, LLaVA-NeXT and InternVL checkpoints into :class:`vlm_jax.model.VLM`.

Supported ``model_type``: ``llava`` (``LlavaForConditionalGeneration``), ``llava_next``
(``LlavaNextForConditionalGeneration``, anyres with unpad + ``image_newline``) and ``internvl``
(``InternVLForConditionalGeneration``, transformers-native InternVL3-*-hf checkpoints). Key names
(spec/parity.md §1.3) are normalised by :class:`TensorSource`, so the v4 hub form, the v5
``save_pretrained`` form and the v5 in-memory form all load:

* ``vision_tower.*``            → :func:`vlm_jax.interop.hf_vision.load_vit`
* ``multi_modal_projector.*``   → ``linear_1``, ``linear_2`` (``[out, in]`` → kernel ``[in, out]``), InternVL
  ``layer_norm``
* ``image_newline``             → ``[D]`` (LLaVA-NeXT)
* ``language_model.*``          → :func:`vlm_jax.interop.hf_lm.load_decoder`

Tensors are streamed one at a time; every tensor must be used and every parameter set.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import nnx

from vlm_jax.interop.checkpoint_io import TensorSource, assign, check_all_set
from vlm_jax.interop.hf_lm import lm_config_from_hf, load_decoder
from vlm_jax.interop.hf_vision import _ACTS as HF_ACTIVATIONS
from vlm_jax.interop.hf_vision import load_vit, vit_config_from_hf
from vlm_jax.model import VLM, VLMConfig
from vlm_jax.projectors import InternVLProjector, ProjectorConfig

# HF class defaults of the fields we read (transformers 5 ``Llava*Config`` / ``InternVLConfig``).
_DEFAULTS = {
    "llava": dict(vision_feature_layer=-2, vision_feature_select_strategy="default", projector_hidden_act="gelu",
                  multimodal_projector_bias=True, tie_word_embeddings=False, image_token_index=32000,
                  vision_model_type="clip_vision_model", text_model_type="llama"),
    "internvl": dict(vision_feature_layer=-1, vision_feature_select_strategy="default", projector_hidden_act="gelu",
                     tie_word_embeddings=True, image_token_id=151667, downsample_ratio=0.5,
                     vision_model_type="internvl_vision", text_model_type="qwen2"),
}
_DEFAULTS["llava_next"] = dict(_DEFAULTS["llava"], image_grid_pinpoints=[[336, 672], [672, 336], [672, 672],
                                                                         [1008, 336], [336, 1008]])
_VISION_KINDS = {"clip_vision_model": "clip", "siglip_vision_model": "siglip", "internvl_vision": "internvl"}
INTERNVL_DEFAULT_MAX_VIEWS = 13  # 12 tiles + thumbnail (InternVL's max_num=12)


def _anyres_max_views(pinpoints, tile: int) -> int:
    """``1 + max tiles`` over LLaVA-NeXT ``image_grid_pinpoints`` (``[[H, W], …]``, multiples of ``tile``)."""
    tiles = []
    for h, w in pinpoints:
        if h % tile or w % tile:
            raise ValueError(f"image_grid_pinpoint {[h, w]} is not a multiple of the vision image_size {tile}")
        tiles.append((h // tile) * (w // tile))
    return 1 + max(tiles)


def _image_token_id(d: Mapping[str, Any], defaults: Mapping[str, Any]) -> int:
    for key in ("image_token_index", "image_token_id"):
        if d.get(key) is not None:
            return int(d[key])
    return int(defaults.get("image_token_index", defaults.get("image_token_id")))


def vlm_config_from_hf(hf_config: Mapping[str, Any], **overrides) -> VLMConfig:
    """:class:`VLMConfig` from a HF VLM ``config.json`` dict (``llava`` | ``llava_next`` | ``internvl``).

    ``overrides`` replace :class:`VLMConfig` fields other than the checkpoint-defined ``projector`` (e.g.
    ``max_views=7`` for InternVL, whose tile budget is a processor setting: default 13); ``vision=`` /
    ``llm=`` dicts go to the tower config builders (``llm={"remat": "full"}``). Options our model
    does not implement raise ``ValueError``.
    """
    model_type = hf_config.get("model_type")
    if model_type not in _DEFAULTS:
        raise ValueError(f"unsupported VLM model_type {model_type!r}; supported: {sorted(_DEFAULTS)}")
    d = {**_DEFAULTS[model_type], **{k: v for k, v in hf_config.items() if v is not None}}
    overrides = dict(overrides)
    vision_over, llm_over = dict(overrides.pop("vision", {})), dict(overrides.pop("llm", {}))
    known = {f.name for f in dataclasses.fields(VLMConfig)} - {"vision", "llm", "projector"}
    if set(overrides) - known:
        raise ValueError(f"unknown VLMConfig overrides {sorted(set(overrides) - known)}; known: {sorted(known)}")

    layer = d["vision_feature_layer"]
    if not isinstance(layer, int):
        raise ValueError(f"vision_feature_layer={layer!r}: only a single int layer is supported (no concat)")
    strategy = d["vision_feature_select_strategy"]
    if strategy not in ("default", "full"):
        raise ValueError(f"unknown vision_feature_select_strategy {strategy!r}")
    if not d.get("multimodal_projector_bias", True):
        raise ValueError("multimodal_projector_bias=False is not supported (our projector Dense layers have biases)")
    act = d["projector_hidden_act"]
    if act not in HF_ACTIVATIONS:
        raise ValueError(f"unsupported projector_hidden_act {act!r}; known: {sorted(HF_ACTIVATIONS)}")

    vision_hf = dict(hf_config.get("vision_config") or {})
    vision_type = vision_hf.get("model_type", d["vision_model_type"])
    if vision_type not in _VISION_KINDS:
        raise ValueError(f"unsupported vision tower model_type {vision_type!r}; known: {sorted(_VISION_KINDS)}")
    if vision_type == "internvl_vision" and layer == -1 and not vision_hf.get("use_mean_pooling", True):
        raise ValueError("InternVL with use_mean_pooling=False and vision_feature_layer=-1 feeds the final "
                         "LayerNorm output to the projector; not supported")
    vision = vit_config_from_hf(vision_hf, _VISION_KINDS[vision_type], **vision_over)
    if strategy == "default" and not vision.cls_token:
        raise ValueError(f"vision_feature_select_strategy='default' with a {vision_type} tower (no CLS token): HF "
                         "would drop the first patch token; not supported")

    text_hf = dict(hf_config.get("text_config") or {})
    text_hf.setdefault("model_type", d["text_model_type"])
    tie = bool(d["tie_word_embeddings"])
    if model_type != "internvl":  # LlavaConfig forwards a text-config tie flag (older checkpoints stored it there)
        tie = tie or bool(text_hf.get("tie_word_embeddings", False))
    llm = lm_config_from_hf(text_hf, **{"tie_embeddings": tie, **llm_over})

    fields: dict[str, Any] = dict(select_layer=layer, keep_cls=strategy == "full",
                                  image_token_id=_image_token_id(hf_config, d))
    if model_type == "internvl":
        fields.update(projector=ProjectorConfig(kind="internvl", act=HF_ACTIVATIONS[act],
                                                downsample=float(d["downsample_ratio"])),
                      layout="flat", max_views=INTERNVL_DEFAULT_MAX_VIEWS)
    else:
        fields.update(projector=ProjectorConfig(kind="mlp2x_gelu", act=HF_ACTIVATIONS[act]), layout="flat",
                      max_views=1)
    if model_type == "llava_next":
        if strategy == "full":
            raise ValueError("llava_next with vision_feature_select_strategy='full' is not supported (HF packing "
                             "assumes a square patch map per view)")
        fields.update(layout="anyres", max_views=_anyres_max_views(d["image_grid_pinpoints"], vision.image_size))
    fields.update(overrides)
    return VLMConfig(vision=vision, llm=llm, **fields)


def _load_projector(projector, source: TensorSource, prefix: str = "multi_modal_projector.") -> None:
    """``{prefix}linear_{1,2}.{weight,bias}`` (``[out, in]`` → kernel ``[in, out]``) and InternVL's
    ``{prefix}layer_norm.{weight,bias}``."""
    def load(param, key, transform=lambda a: a):
        assign(param, transform(source.get(prefix + key)), prefix + key)

    if isinstance(projector, InternVLProjector):
        load(projector.layer_norm.scale, "layer_norm.weight")
        load(projector.layer_norm.bias, "layer_norm.bias")
    for name in ("linear_1", "linear_2"):
        dense = getattr(projector, name)
        load(dense.kernel, name + ".weight", np.transpose)
        load(dense.bias, name + ".bias")
    source.sub(prefix).check_all_used()


def load_vlm(model: VLM, source: TensorSource) -> VLM:
    """Fill ``model`` (possibly abstract, from ``nnx.eval_shape``) from a VLM checkpoint ``source``
    (opened with ``vlm=True``). Raises :class:`CheckpointError` naming the tensor on a missing,
    mis-shaped or unexpected tensor, or if a parameter is left unset."""
    load_vit(model.vision, source.sub("vision_tower."))
    _load_projector(model.projector, source)
    if model.image_newline is not None:
        assign(model.image_newline, source.get("image_newline"), "image_newline")
    load_decoder(model.llm, source.sub("language_model."))
    source.check_all_used(ignore=("vision_tower.",))  # the tower view skips tensors it knowingly drops
    check_all_set(model)
    return model


def load_vlm_from_hf_dir(path: str, **overrides) -> VLM:
    """A :class:`VLM` from a ``save_pretrained`` directory (``config.json`` + safetensors).

    Parameters are created abstractly (``nnx.eval_shape``, no random init) and every one is filled
    from the checkpoint. ``overrides`` go to :func:`vlm_config_from_hf`.
    """
    with open(os.path.join(path, "config.json")) as f:
        cfg = vlm_config_from_hf(json.load(f), **overrides)
    model = nnx.eval_shape(lambda: VLM(cfg, rngs=nnx.Rngs(0)))
    return load_vlm(model, TensorSource.open(path, vlm=True))


def load_base_weights(model: VLM, path: str) -> list[str]:
    """Start a high-res model from a released HF VLM: load the vision tower, the LLM and the projector
    (SliME: its shared MLP expert; LLaVA-NeXT: ``image_newline``) into an initialised ``model``; the papers'
    new modules (GSWA, SliceRestore, Self-Mining, DEM, SliME's resamplers and gate) keep their initialisation.

    Returns the checkpoint parts that were loaded. Shapes must match; unexpected tensors raise.
    """
    source = TensorSource.open(path, vlm=True)
    load_vit(model.vision, source.sub("vision_tower."))
    load_decoder(model.llm, source.sub("language_model."))
    loaded = ["vision_tower", "language_model"]
    projector = model.projector if model.slime is None else model.slime.projector.mlp
    _load_projector(projector, source)
    loaded.append("multi_modal_projector")
    if model.image_newline is not None:
        assign(model.image_newline, source.get("image_newline"), "image_newline")
        loaded.append("image_newline")
    source.check_all_used(ignore=("vision_tower.", "image_newline"))
    return loaded
