"""Import Hugging Face LLaVA-1.5, LLaVA-NeXT and InternVL checkpoints into :class:`vlm_jax.model.VLM`.

Supported ``model_type`` (the registry :data:`vlm_jax.interop.mappings.vlms.VLMS`): ``llava``
(``LlavaForConditionalGeneration``), ``llava_next`` (``LlavaNextForConditionalGeneration``, anyres with
unpad + ``image_newline``) and ``internvl`` (``InternVLForConditionalGeneration``, transformers-native
InternVL3-*-hf checkpoints). Key names (spec/parity.md §1.3) are normalised by :class:`TensorSource`, so
the v4 hub form, the v5 ``save_pretrained`` form and the v5 in-memory form all load. The key table of a
VLM is its towers' tables under ``vision_tower.`` / ``language_model.`` plus the family's connector table
(:func:`vlm_jax.interop.mappings.vlms.vlm_keys`).

Tensors are streamed one at a time; every tensor must be used and every parameter set.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

from flax import nnx

from vlm_jax.interop.apply_mapping import load_mapped
from vlm_jax.interop.checkpoint_io import TensorSource, check_all_set
from vlm_jax.interop.config_table import ACT_FROM_HF, named
from vlm_jax.interop.hf_lm import lm_config_from_hf
from vlm_jax.interop.hf_vision import vit_config_from_hf
from vlm_jax.interop.key_mapping import table
from vlm_jax.interop.mappings.towers import VISION, by_model_type
from vlm_jax.interop.mappings.vlms import family_of, vlm_family, vlm_keys
from vlm_jax.model import VLM, VLMConfig

STRATEGIES = {"default": False, "full": True}  # HF vision_feature_select_strategy → our keep_cls


def _read_common(d: Mapping[str, Any]) -> tuple[int, str, str]:
    """``vision_feature_layer``, ``vision_feature_select_strategy`` and our projector activation."""
    layer = d["vision_feature_layer"]
    if not isinstance(layer, int):
        raise ValueError(f"vision_feature_layer={layer!r}: only a single int layer is supported (no concat)")
    strategy = d["vision_feature_select_strategy"]
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown vision_feature_select_strategy {strategy!r}")
    return layer, strategy, named(ACT_FROM_HF, "projector_hidden_act")(d["projector_hidden_act"])


def vlm_config_from_hf(hf_config: Mapping[str, Any], **overrides) -> VLMConfig:
    """:class:`VLMConfig` from a HF VLM ``config.json`` dict (``llava`` | ``llava_next`` | ``internvl``).

    ``overrides`` replace :class:`VLMConfig` fields other than the checkpoint-defined ``projector`` (e.g.
    ``max_views=7`` for InternVL, whose tile budget is a processor setting: default 13); ``vision=`` /
    ``llm=`` dicts go to the tower config builders (``llm={"dtype": "bfloat16"}``). Options our model
    does not implement raise ``ValueError``.
    """
    family = vlm_family(hf_config.get("model_type"))
    d = {**family.defaults, **{k: v for k, v in hf_config.items() if v is not None}}
    overrides = dict(overrides)
    vision_over, llm_over = dict(overrides.pop("vision", {})), dict(overrides.pop("llm", {}))
    known = {f.name for f in dataclasses.fields(VLMConfig)} - {"vision", "llm", "projector"}
    if set(overrides) - known:
        raise ValueError(f"unknown VLMConfig overrides {sorted(set(overrides) - known)}; known: {sorted(known)}")
    layer, strategy, act = _read_common(d)

    vision_hf = dict(hf_config.get("vision_config") or {})
    vision_family = by_model_type(VISION, vision_hf.get("model_type", d["vision_model_type"]), "vision tower")
    if vision_family is VISION["internvl"] and layer == -1 and not vision_hf.get("use_mean_pooling", True):
        raise ValueError("InternVL with use_mean_pooling=False and vision_feature_layer=-1 feeds the final "
                         "LayerNorm output to the projector; not supported")
    vision = vit_config_from_hf(vision_hf, vision_family.name, **vision_over)
    if strategy == "default" and not vision.cls_token:
        raise ValueError(f"vision_feature_select_strategy='default' with a {vision_family.name} tower (no CLS "
                         "token): HF would drop the first patch token; not supported")

    text_hf = dict(hf_config.get("text_config") or {})
    text_hf.setdefault("model_type", d["text_model_type"])
    tie = bool(d["tie_word_embeddings"])
    if family.tie_in_text_config:
        tie = tie or bool(text_hf.get("tie_word_embeddings", False))
    llm = lm_config_from_hf(text_hf, **{"tie_embeddings": tie, **llm_over})

    fields: dict[str, Any] = dict(select_layer=layer, keep_cls=STRATEGIES[strategy],
                                  image_token_id=int(d[family.image_token_key]), **family.read(d, vision, act))
    fields.update(overrides)
    return VLMConfig(vision=vision, llm=llm, **fields)


def load_vlm(model: VLM, source: TensorSource) -> VLM:
    """Fill ``model`` (possibly abstract, from ``nnx.eval_shape``) from a VLM checkpoint ``source``
    (opened with ``vlm=True``) in the layout of the family :func:`~vlm_jax.interop.mappings.vlms.family_of`
    its config has. Raises :class:`~vlm_jax.interop.errors.CheckpointError` naming the tensor on a
    missing, mis-shaped or unexpected tensor, or if a parameter is left unset."""
    load_mapped(model, source, vlm_keys(family_of(model.cfg), model.cfg, source=source))
    check_all_set(model)
    return model


def _read_config(path: str) -> dict[str, Any]:
    with open(os.path.join(path, "config.json")) as f:
        return json.load(f)


def load_vlm_from_hf_dir(path: str, **overrides) -> VLM:
    """A :class:`VLM` from a ``save_pretrained`` directory (``config.json`` + safetensors).

    Parameters are created abstractly (``nnx.eval_shape``, no random init) and every one is filled
    from the checkpoint. ``overrides`` go to :func:`vlm_config_from_hf`.
    """
    cfg = vlm_config_from_hf(_read_config(path), **overrides)
    model = nnx.eval_shape(lambda: VLM(cfg, rngs=nnx.Rngs(0)))
    return load_vlm(model, TensorSource.open(path, vlm=True))


def load_base_weights(model: VLM, path: str) -> list[str]:
    """Start a high-res model from a released HF VLM (``config.json`` + safetensors): load the vision tower,
    the LLM and the projector (SliME: its shared MLP expert; LLaVA-NeXT: ``image_newline``) into an initialised
    ``model``; the papers' new modules (GSWA, SliceRestore, Self-Mining, DEM, SliME's resamplers and gate) keep
    their initialisation. A checkpoint's ``image_newline`` is skipped when the model has none.

    Returns the checkpoint parts that were loaded. Shapes must match; unexpected tensors raise.
    """
    family = vlm_family(_read_config(path).get("model_type"))
    source = TensorSource.open(path, vlm=True)
    projector = "projector" if model.slime is None else "slime/projector/mlp"
    keys = vlm_keys(family, model.cfg, projector, source) + table(ignored=("image_newline",))
    load_mapped(model, source, keys)
    loaded = ["vision_tower", "language_model", "multi_modal_projector"]
    return loaded + (["image_newline"] if model.image_newline is not None else [])
