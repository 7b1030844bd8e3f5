"""Export a :class:`~vlm_jax.model.VLM` as a transformers 5 ``save_pretrained`` directory.

The inverse of :mod:`vlm_jax.interop.hf_vlm` (LLaVA-1.5 ``llava``, LLaVA-NeXT ``llava_next``, InternVL
``internvl``): ``config.json`` from :mod:`vlm_jax.interop.hf_config_export` and float32 safetensors
with the keys ``…ForConditionalGeneration.save_pretrained`` writes (spec/parity.md §1.3), from the same
key tables the import reads (:mod:`vlm_jax.interop.mappings`) applied in the export direction: every
transform's inverse, each scanned ``[L, …]`` parameter unstacked into one tensor per layer; a tied
decoder writes no head, as transformers does.

Streaming: every tensor is planned with its shape first, then fetched from the (possibly sharded)
device arrays one at a time (per layer for stacked parameters: ``jax.device_get(param[i])``) and
written, so the host never holds more than one tensor. Every parameter of the model must be
exported exactly once (otherwise :class:`~vlm_jax.interop.hf_config_export.NotExportable`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from vlm_jax.interop.apply_mapping import plan_export
from vlm_jax.interop.hf_config_export import hf_config, infer_family
from vlm_jax.interop.mappings.vlms import family_of, vlm_keys
from vlm_jax.interop.safetensors_writer import PlannedTensor, write_safetensors
from vlm_jax.model import VLM

DEFAULT_MAX_SHARD_BYTES = 5 * 2 ** 30  # transformers' default max_shard_size ("5GB")


def plan_tensors(model: VLM) -> list[PlannedTensor]:
    """The HF tensors of ``model`` (v5 ``save_pretrained`` keys), each with its shape and a fetch callback.

    Raises :class:`~vlm_jax.interop.errors.NotExportable` if a parameter of the model has no HF tensor.
    """
    return plan_export(model, vlm_keys(family_of(model.cfg), model.cfg))


def export_hf(model: VLM, out_dir: str, *, family: str | None = None,
              image_grid_pinpoints: Sequence[Sequence[int]] | None = None,
              extra_config: Mapping[str, Any] | None = None,
              max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> list[str]:
    """Write ``model`` to ``out_dir`` as a transformers ``family`` checkpoint (float32); returns the file names.

    Args:
      model: a concrete :class:`VLM` (parameters may be sharded over devices).
      family: ``"llava"`` | ``"llava_next"`` | ``"internvl"``; inferred from the config when None.
      image_grid_pinpoints: LLaVA-NeXT ``[[H, W], …]``; default: the 1.6 list scaled to the tower's size.
      extra_config: extra top-level ``config.json`` entries (checked like the rest).
      max_shard_bytes: above this many bytes the weights are split into ``model-0000i-of-0000n`` files
        with a ``model.safetensors.index.json``.

    Raises :class:`NotExportable` for models with stages that transformers lacks (GSWA, SliceRestore,
    Self-Mining, DEM, SliME) or settings its config cannot express.
    """
    family = infer_family(model.cfg) if family is None else family
    config = hf_config(model.cfg, family, image_grid_pinpoints=image_grid_pinpoints, extra_config=extra_config)
    tensors = plan_tensors(model)
    files = write_safetensors(tensors, out_dir, max_shard_bytes)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    return files + ["config.json"]
