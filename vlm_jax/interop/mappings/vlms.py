"""The registry of whole-VLM checkpoint families and the key table of a VLM (towers + connector)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from vlm_jax.interop.checkpoint_io import TensorSource
from vlm_jax.interop.errors import NotExportable
from vlm_jax.interop.family import VLMFamily
from vlm_jax.interop.key_mapping import KeyMapping
from vlm_jax.interop.mappings import (
    inf_llava,
    internvl,
    internvl_chat,
    llava,
    llava_next,
    llava_original,
    slime_official,
)
from vlm_jax.interop.mappings.towers import VISION, decoder_family, vision_family
from vlm_jax.model_config import VLMConfig

VLMS: dict[str, VLMFamily] = {f.model_type: f for f in (llava.FAMILY, llava_next.FAMILY, internvl.FAMILY,
                                                        internvl_chat.FAMILY, inf_llava.FAMILY, slime_official.FAMILY,
                                                        llava_original.FAMILY)}
EXPORTABLE = tuple(name for name, family in VLMS.items() if family.write_config is not None)


def vlm_family(hf_config: Mapping[str, Any], tensor_names: Collection[str] = ()) -> VLMFamily:
    """The family of an HF VLM checkpoint (``config.json`` dict, names of its tensors as stored): the first that
    claims it (:attr:`VLMFamily.claims`), else the one of its ``model_type``; ``ValueError`` naming the supported
    ones otherwise."""
    for family in VLMS.values():
        if family.claims is not None and family.claims(hf_config, tensor_names):
            return family
    model_type = hf_config.get("model_type")
    if model_type not in VLMS:
        raise ValueError(f"unsupported VLM model_type {model_type!r}; supported: {sorted(VLMS)}")
    return VLMS[model_type]


def family_of(cfg: VLMConfig) -> VLMFamily:
    """The exportable family whose structure ``cfg`` has (projector kind and layout)."""
    for family in VLMS.values():
        if family.matches(cfg):
            return family
    raise NotExportable(f"no HF family has projector {cfg.projector.kind!r} with layout {cfg.layout!r}")


def vision_keys(family: VLMFamily, cfg: VLMConfig) -> KeyMapping:
    """The vision tower's table in a VLM checkpoint of ``family``: under ``vision/`` and the family's prefix."""
    tower = VISION[family.vision_family] if family.vision_family else vision_family(cfg.vision)
    return tower.keys(cfg.vision).nest("vision/", family.vision_prefix)


def vlm_keys(family: VLMFamily, cfg: VLMConfig, projector: str = "projector",
             source: TensorSource | None = None) -> KeyMapping:
    """The key table of a VLM of ``family``: vision tower under ``vision/``, decoder under ``llm/`` (its layout
    recognised from ``source`` when given), connector at ``projector``."""
    vision = vision_keys(family, cfg)
    llm_source = None if source is None else source.sub(family.llm_prefix)
    llm = decoder_family(cfg.llm, llm_source).keys(cfg.llm).nest("llm/", family.llm_prefix)
    modules = family.module_keys(cfg) if family.module_keys is not None else KeyMapping(())
    return vision + family.connector_keys(projector) + modules + llm
