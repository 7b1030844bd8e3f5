"""Import Hugging Face CLIP / SigLIP / InternViT vision towers into :class:`vlm_jax.vision.vit.ViT`.

The key and config tables are in :mod:`vlm_jax.interop.mappings` (``clip``, ``siglip``, ``internvit`` for
transformers' InternVL naming, ``intern_vit`` for InternViT's released layout);
this module picks the family and applies its table with :func:`vlm_jax.interop.apply_mapping.load_mapped`.
Keys are relative to the vision model: inside a VLM checkpoint the caller passes
``source.sub("vision_tower.")``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx

from vlm_jax.interop.apply_mapping import load_mapped
from vlm_jax.interop.checkpoint_io import TensorSource, canonical_key, canonical_vlm_key, check_all_set
from vlm_jax.interop.mappings.towers import VISION, detect_vision_family, vit_config
from vlm_jax.vision.config import ViTConfig
from vlm_jax.vision.vit import ViT

KINDS = tuple(VISION)


def _family(kind: str):
    if kind not in VISION:
        raise ValueError(f"unknown vision tower kind {kind!r}; known: {KINDS}")
    return VISION[kind]


def vit_config_from_hf(hf_config: Mapping[str, Any], kind: str, **overrides) -> ViTConfig:
    """:class:`ViTConfig` from an HF vision config dict (``config.json``; a VLM config's
    ``vision_config`` is used when present). ``overrides`` set our own fields (dtype, remat, …)."""
    return vit_config(_family(kind), hf_config.get("vision_config") or hf_config, **overrides)


def detect_kind(source: TensorSource) -> str:
    """The family (``clip`` | ``siglip`` | ``internvl`` | ``intern_vit``) of the tower under ``source``."""
    return detect_vision_family(source).name


def load_vit(vit: ViT, source: TensorSource, kind: str | None = None) -> None:
    """Load an HF vision tower of ``kind`` (detected from the key names when None) into ``vit`` in place.

    ``source`` keys are relative to the vision model (``embeddings…``, ``encoder…``). Raises
    :class:`~vlm_jax.interop.errors.CheckpointError` naming the tensor on a missing / mis-shaped /
    unexpected tensor.
    """
    family = detect_vision_family(source) if kind is None else _family(kind)
    load_mapped(vit, source, family.keys(vit.cfg))


def load_vit_from_hf_dir(path: str, kind: str, **overrides) -> ViT:
    """A :class:`ViT` from a ``save_pretrained`` directory (``config.json`` + safetensors).

    A standalone vision model (``CLIPVisionModel`` …) is read at the top level; a VLM directory
    (config with ``vision_config``) is read under ``vision_tower.`` (other towers are not checked).
    Parameters are created abstractly and every one must be filled from the checkpoint.
    """
    with open(os.path.join(path, "config.json")) as f:
        hf_config = json.load(f)
    vit = nnx.eval_shape(lambda: ViT(vit_config_from_hf(hf_config, kind, **overrides), rngs=nnx.Rngs(0)))
    vlm = "vision_config" in hf_config
    source = TensorSource.open(path, rename=canonical_vlm_key if vlm else canonical_key)
    load_vit(vit, source.sub("vision_tower.") if vlm else source, kind)
    check_all_set(vit)
    return vit


def empty_vit(cfg: ViTConfig) -> ViT:
    """A :class:`ViT` whose parameters are host zeros of the right shapes and dtypes (no random
    initialisation, no compilation: creating parameters eagerly compiles every initialiser separately)."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: ViT(cfg, rngs=nnx.Rngs(0))))
    return nnx.merge(graphdef, jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), state))
