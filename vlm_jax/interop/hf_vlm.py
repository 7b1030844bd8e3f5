"""Import Hugging Face and released VLM checkpoints into :class:`vlm_jax.model.VLM`.

Families (the registry :data:`vlm_jax.interop.mappings.vlms.VLMS`, recognised from ``config.json`` and, where the
config cannot tell, from the tensor names): ``llava`` (``LlavaForConditionalGeneration``), ``llava_next``
(``LlavaNextForConditionalGeneration``, anyres with unpad + ``image_newline``), ``internvl``
(``InternVLForConditionalGeneration``, transformers-native InternVL3-*-hf checkpoints), ``internvl_chat``
(InternVL's released remote-code layout, InternVL2-2B), ``llava_llama`` (the original LLaVA repository's layout),
``inf_llava`` and ``slime`` (the papers' official checkpoints, built on the original LLaVA layout). Key names of
the transformers families (spec/parity.md §1.3) are normalised by :class:`TensorSource`, so the v4 hub form, the
v5 ``save_pretrained`` form and the v5 in-memory form all load. The key table of a VLM is its towers' tables
plus the family's connector table and the tables of the papers' modules it stores
(:func:`vlm_jax.interop.mappings.vlms.vlm_keys`). Separate tower directories: :mod:`vlm_jax.interop.tower_init`.

Tensors are streamed one at a time; every tensor must be used and every parameter set.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection, Mapping
from typing import Any

from flax import nnx

from vlm_jax.interop.apply_mapping import load_mapped
from vlm_jax.interop.checkpoint_io import TensorSource, check_all_set, read_hf_config
from vlm_jax.interop.errors import CheckpointError
from vlm_jax.interop.family import VLMFamily
from vlm_jax.interop.key_mapping import table
from vlm_jax.interop.mappings.vlms import family_of, vision_keys, vlm_family, vlm_keys
from vlm_jax.interop.tower_init import load_vision_tower
from vlm_jax.model import VLM, VLMConfig
from vlm_jax.stages import STAGES, Site, active_stages


def vlm_config_from_hf(hf_config: Mapping[str, Any], *, tensor_names: Collection[str] = (), **overrides) -> VLMConfig:
    """:class:`VLMConfig` from a VLM ``config.json`` dict of a family of :data:`~vlm_jax.interop.mappings.vlms.VLMS`;
    ``tensor_names`` (the checkpoint's, as stored) recognise the families whose config cannot tell (INF-LLaVA).

    ``overrides`` replace :class:`VLMConfig` fields other than the checkpoint-defined ``projector`` (e.g.
    ``max_views=7`` for InternVL, whose tile budget is a processor setting: default 13; ``image_token_id`` for
    ``internvl_chat``, whose config does not record it); ``vision=`` / ``llm=`` dicts go to the tower config
    builders (``llm={"dtype": "bfloat16"}``). Options our model does not implement raise ``ValueError``.
    """
    family = vlm_family(hf_config, tensor_names)
    overrides = dict(overrides)
    vision_over, llm_over = dict(overrides.pop("vision", {})), dict(overrides.pop("llm", {}))
    known = {f.name for f in dataclasses.fields(VLMConfig)} - {"vision", "llm", "projector"}
    if set(overrides) - known:
        raise ValueError(f"unknown VLMConfig overrides {sorted(set(overrides) - known)}; known: {sorted(known)}")
    recorded = family.read_config(hf_config, vision_over, llm_over)
    passed, found = overrides.get("image_token_id"), recorded.get("image_token_id")
    if None not in (passed, found) and passed != found:
        raise ValueError(f"the {family.model_type} config.json records image token id {recorded['image_token_id']} "
                         f"but image_token_id={overrides['image_token_id']} was passed (the tokenizer's image token?)")
    fields = {**recorded, **overrides}
    if "image_token_id" not in fields:
        raise ValueError(f"a {family.model_type} config.json does not record the image placeholder id: pass "
                         "image_token_id= (the tokenizer's id of the image context token)")
    return VLMConfig(**fields)


def load_vlm(model: VLM, source: TensorSource, family: VLMFamily | None = None, vision_dir: str | None = None) -> VLM:
    """Fill ``model`` (possibly abstract, from ``nnx.eval_shape``) from a VLM checkpoint ``source`` (opened with
    the family's ``rename``) in the layout of ``family`` (default: the transformers family of the model's
    config); ``vision_dir``: a directory to read the vision tower from instead, for checkpoints that do not store
    it (:func:`~vlm_jax.interop.tower_init.load_vision_tower`). Raises
    :class:`~vlm_jax.interop.errors.CheckpointError` naming the tensor on a missing, mis-shaped or unexpected
    tensor, or if a parameter is left unset."""
    family = family_of(model.cfg) if family is None else family
    keys = vlm_keys(family, model.cfg, projector_path(model), source)
    if vision_dir is not None:
        load_vision_tower(model, vision_dir)
        keys = keys.without(vision_keys(family, model.cfg))
    elif not source.sub(family.vision_prefix).keys():
        raise CheckpointError(f"the {family.model_type} checkpoint stores no vision tower (no {family.vision_prefix}* "
                              "tensors; released LLaVA-1.5 checkpoints read it from mm_vision_tower): set "
                              "mm_vision_tower to a local directory of the tower (config.json + safetensors)")
    load_mapped(model, source, keys)
    check_all_set(model)
    return model


def separate_vision_dir(hf_config: Mapping[str, Any], source: TensorSource, family: VLMFamily) -> str | None:
    """The directory ``mm_vision_tower`` names when the checkpoint stores no vision tower and that directory has
    safetensors (the original LLaVA layout reads its tower from there); None otherwise."""
    tower = hf_config.get("mm_vision_tower")
    if source.sub(family.vision_prefix).keys() or not (isinstance(tower, str) and os.path.isdir(tower)):
        return None
    return tower if any(f.endswith(".safetensors") for f in os.listdir(tower)) else None


def projector_path(model: VLM) -> str:
    """Where ``model`` keeps the projector a checkpoint's connector table fills (SliME: its shared MLP expert)."""
    return "projector" if model.slime is None else "slime/projector/mlp"


def stored_names(path: str) -> list[str]:
    """The names of a checkpoint directory's tensors as stored (families are recognised by them)."""
    return TensorSource.open(path, rename=lambda key: key).keys()


def load_vlm_from_hf_dir(path: str, **overrides) -> VLM:
    """A :class:`VLM` from a ``save_pretrained`` directory (``config.json`` + safetensors).

    Parameters are created abstractly (``nnx.eval_shape``, no random init) and every one is filled
    from the checkpoint. ``overrides`` go to :func:`vlm_config_from_hf`.
    """
    hf_config = read_hf_config(path)
    names = stored_names(path)
    family = vlm_family(hf_config, names)
    cfg = vlm_config_from_hf(hf_config, tensor_names=names, **overrides)
    model = nnx.eval_shape(lambda: VLM(cfg, rngs=nnx.Rngs(0)))
    source = TensorSource.open(path, rename=family.rename)
    return load_vlm(model, source, family, separate_vision_dir(hf_config, source, family))


def load_base_weights(model: VLM, path: str, *, projector: bool | None = None) -> list[str]:
    """Start a high-res model from a released VLM directory (``config.json`` + safetensors, any family of
    :data:`~vlm_jax.interop.mappings.vlms.VLMS`): load the vision tower, the LLM and, by ``projector``, the
    projector (SliME: its shared MLP expert; LLaVA-NeXT: with ``image_newline``) into an initialised ``model``; the
    papers' new modules (GSWA, SliceRestore, Self-Mining, DEM, SliME's resamplers and gate) keep their
    initialisation, unless the directory is that paper's official checkpoint, which stores them (the family's
    ``module_keys``: INF-LLaVA's DEM, SliME's resamplers and gate). A checkpoint's ``image_newline`` is skipped when
    the model has none.

    ``projector``: True loads the checkpoint's projector, False keeps the model's initialisation (its tensors are
    read past), None loads it only when the model's projector sees what the checkpoint's was trained on
    (:func:`projector_refusal`) and raises ``ValueError`` naming the stage otherwise.

    Returns the checkpoint parts that were loaded. Shapes must match; unexpected tensors raise.
    """
    family = vlm_family(read_hf_config(path), stored_names(path))
    if projector is None:
        refusal = projector_refusal(model.cfg)
        if refusal:
            raise ValueError(f"{path} holds a trained projector, but {refusal}: pass projector=False to start the "
                             "projector from its initialisation (the papers' recipe) or projector=True to load it")
        projector = True
    source = TensorSource.open(path, rename=family.rename)
    keys = vlm_keys(family, model.cfg, projector_path(model), source) + table(ignored=("image_newline",))
    if not projector:
        keys = keys.without(family.connector_keys(projector_path(model)))
    load_mapped(model, source, keys)
    loaded = ["vision_tower", "language_model"]
    if projector:
        loaded += ["multi_modal_projector"] + (["image_newline"] if model.image_newline is not None else [])
    return loaded


def projector_refusal(cfg: VLMConfig) -> str | None:
    """Why a released projector does not fit a model of ``cfg`` (None when it does): a stage acting on the ViT
    features changes what the projector reads (DEM, Self-Mining), a connector replaces it (SliME)."""
    changing = [stage.name for stage, _ in active_stages(cfg, STAGES) if stage.site in (Site.FEATURES, Site.CONNECTOR)]
    if not changing:
        return None
    return f"the model's stage(s) {changing} change what the projector reads or replace it"
