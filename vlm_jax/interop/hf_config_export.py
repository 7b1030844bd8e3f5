"""``config.json`` of a transformers ``llava`` / ``llava_next`` / ``internvl`` model from a :class:`VLMConfig`.

The inverse of :func:`vlm_jax.interop.hf_vlm.vlm_config_from_hf`, written by the family's table
(:mod:`vlm_jax.interop.mappings`; transformers 5 field names, as ``save_pretrained`` writes them). Every
exported config is read back with the importer and must give the same model (runtime fields such as precision
/ remat / max_views aside): a model feature the HF config cannot express (a non-default ``qk_norm_eps``, a CLIP
tower without its post-LayerNorm, a dynamic RoPE whose base length is not ``max_position_embeddings`` …) is
refused with the differing fields named, instead of writing a config that transformers would run differently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from vlm_jax.interop.errors import NotExportable
from vlm_jax.interop.hf_vlm import vlm_config_from_hf
from vlm_jax.interop.mappings.llava_next import default_pinpoints
from vlm_jax.interop.mappings.vlms import EXPORTABLE, VLMS, family_of
from vlm_jax.model_config import VLMConfig
from vlm_jax.stages import STAGES

__all__ = ["NotExportable", "check_exportable", "default_pinpoints", "hf_config", "infer_family"]

_RUNTIME_FIELDS = ("remat", "attention_impl")  # of both tower configs


def infer_family(cfg: VLMConfig) -> str:
    """``internvl`` for the pixel-shuffle projector, ``llava_next`` for the anyres layout, else ``llava``."""
    return family_of(cfg).model_type


def check_exportable(cfg: VLMConfig, family: str) -> None:
    """Raise :class:`NotExportable` for high-res stages (no HF class) or a family that does not fit."""
    if family not in EXPORTABLE:
        raise ValueError(f"unknown or import-only HF family {family!r}; exportable: {sorted(EXPORTABLE)}")
    stages = [name for name in STAGES if getattr(cfg, name) is not None]
    if stages:
        raise NotExportable(f"the model's module(s) {', '.join(stages)} have no transformers class (the papers' "
                            "modules exist only in vlm_jax); export a model without them")
    if family != infer_family(cfg):
        raise NotExportable(f"a model with projector {cfg.projector.kind!r} and layout {cfg.layout!r} is "
                            f"{infer_family(cfg)!r}, not {family!r}")


def _runtime_free(cfg: VLMConfig) -> dict[str, Any]:
    """The fields an HF config defines: runtime settings and the processor-side tile budget dropped."""
    d = dataclasses.asdict(cfg)
    for name in _RUNTIME_FIELDS:
        d["vision"].pop(name, None)
        d["llm"].pop(name, None)
    for name in ("max_views", "global_view", "precision"):
        d.pop(name)
    return d


def _differences(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, Mapping) and isinstance(y, Mapping):
            out += _differences(x, y, f"{prefix}{key}.")
        elif x != y:
            out.append(f"{prefix}{key}: model {x!r} vs HF config {y!r}")
    return out


def hf_config(cfg: VLMConfig, family: str, *, image_grid_pinpoints: Sequence[Sequence[int]] | None = None,
              extra_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``config.json`` dict of ``cfg`` as an HF ``family`` model (float32 weights).

    ``image_grid_pinpoints`` (LLaVA-NeXT only; ``[[H, W], …]`` multiples of the tower's image size)
    default to :func:`default_pinpoints`. ``extra_config`` entries are added at the top level last
    (e.g. ``{"bos_token_id": 1}``) and go through the same read-back check.
    """
    check_exportable(cfg, family)
    if image_grid_pinpoints is not None and family != "llava_next":
        raise ValueError("image_grid_pinpoints apply to llava_next only")
    d = VLMS[family].write_config(cfg, image_grid_pinpoints)
    d.update(extra_config or {})
    back = vlm_config_from_hf(d, max_views=cfg.max_views, global_view=cfg.global_view)
    diff = _differences(_runtime_free(cfg), _runtime_free(back))
    if diff:
        raise NotExportable("the HF config cannot express this model: " + "; ".join(diff))
    return d
