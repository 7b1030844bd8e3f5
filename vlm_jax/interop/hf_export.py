"""Export a :class:`~vlm_jax.model.VLM` as a transformers 5 ``save_pretrained`` directory.

The inverse of :mod:`vlm_jax.interop.hf_vlm` (LLaVA-1.5 ``llava``, LLaVA-NeXT ``llava_next``, InternVL
``internvl``): ``config.json`` from :mod:`vlm_jax.interop.hf_config_export` and float32 or bfloat16 safetensors
with the keys ``…ForConditionalGeneration.save_pretrained`` writes (spec/parity.md §1.3), from the same
key tables the import reads (:mod:`vlm_jax.interop.mappings`) applied in the export direction: every
transform's inverse, each scanned ``[L, …]`` parameter unstacked into one tensor per layer; a tied
decoder writes no head, as transformers does.

Streaming: every tensor is planned with its shape first, then fetched from the (possibly sharded)
device arrays one at a time (per layer for stacked parameters: ``jax.device_get(param[i])``) and
written, so the host never holds more than one tensor. Every parameter of the model must be
exported exactly once (otherwise :class:`~vlm_jax.interop.hf_config_export.NotExportable`).

With the run's :class:`RunFiles` (tokenizer, chat template, tiling) the directory is complete for
``AutoProcessor`` / ``AutoModelForImageTextToText``: the tokenizer files (:mod:`~vlm_jax.interop.tokenizer_export`),
``generation_config.json`` (:mod:`~vlm_jax.interop.generation_config_export`) and the processor files
(:mod:`~vlm_jax.interop.processor_export`). Everything is computed and checked before the first file is written:
a refused model leaves no directory behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from vlm_jax.data.templates import CHECKPOINT_TEMPLATE, TEMPLATES
from vlm_jax.data.tokenizer import MissingImageTokenError, Tokenizer
from vlm_jax.interop.apply_mapping import plan_export
from vlm_jax.interop.chat_template_export import named_chat_template
from vlm_jax.interop.errors import NotExportable
from vlm_jax.interop.generation_config_export import GENERATION_CONFIG_FILE, generation_config
from vlm_jax.interop.hf_config_export import hf_config, infer_family
from vlm_jax.interop.mappings.vlms import family_of, vlm_keys
from vlm_jax.interop.processor_export import IMAGE_PROCESSOR_FILE, PROCESSOR_FILE, processor_files
from vlm_jax.interop.safetensors_writer import PlannedTensor, check_dtype, write_safetensors
from vlm_jax.interop.tokenizer_export import TOKENIZER_FILES, tokenizer_files
from vlm_jax.model import VLM
from vlm_jax.model_config import VLMConfig

DEFAULT_MAX_SHARD_BYTES = 5 * 2 ** 30  # transformers' default max_shard_size ("5GB")
# every file besides the weights an export may write
COMPANION_FILES = (*TOKENIZER_FILES, IMAGE_PROCESSOR_FILE, PROCESSOR_FILE, GENERATION_CONFIG_FILE, "config.json")


@dataclasses.dataclass(frozen=True)
class RunFiles:
    """What a run adds beside the weights.

    Attributes:
      tokenizer: the run's tokenizer.
      tokenizer_source: the directory or file it was loaded from (``config.data.tokenizer``, or the default model).
      template: the run's chat template name (``config.data.template``).
      tiling: the run's ``config.data.tiling`` block.
    """

    tokenizer: Tokenizer
    tokenizer_source: str
    template: str
    tiling: Mapping[str, Any]


def plan_tensors(model: VLM, dtype: str = "float32") -> list[PlannedTensor]:
    """The HF tensors of ``model`` (v5 ``save_pretrained`` keys), each with its shape, a fetch callback and the
    ``dtype`` it is written in.

    Raises :class:`~vlm_jax.interop.errors.NotExportable` if a parameter of the model has no HF tensor.
    """
    check_dtype(dtype)
    planned = plan_export(model, vlm_keys(family_of(model.cfg), model.cfg))
    return [dataclasses.replace(t, dtype=dtype) for t in planned]


def _check_tokenizer(tokenizer: Tokenizer, cfg: VLMConfig) -> None:
    if tokenizer.vocab_size > cfg.llm.vocab_size:
        raise NotExportable(f"the tokenizer has {tokenizer.vocab_size} ids but the model's vocabulary "
                            f"{cfg.llm.vocab_size}")
    try:
        image_id = tokenizer.image_token_id
    except MissingImageTokenError as e:
        raise NotExportable(str(e)) from e
    if image_id != cfg.image_token_id:
        raise NotExportable(f"the tokenizer's image token {tokenizer.image_token!r} has id {image_id} but the "
                            f"model's image_token_id is {cfg.image_token_id}")


def run_files(run: RunFiles, cfg: VLMConfig, family: str, config: Mapping[str, Any]) -> dict[str, bytes]:
    """``{file name: bytes}`` of the tokenizer, generation and processor files (module docstring)."""
    _check_tokenizer(run.tokenizer, cfg)
    jsons = processor_files(family, run.tiling, cfg, config, run.tokenizer)
    jsons[GENERATION_CONFIG_FILE] = generation_config(run.tokenizer, run.template)
    template = (run.tokenizer.chat_template if run.template == CHECKPOINT_TEMPLATE
                else named_chat_template(TEMPLATES[run.template], run.tokenizer.image_token))
    files = tokenizer_files(run.tokenizer_source, run.tokenizer, template)
    files.update({name: json.dumps(value, indent=2, sort_keys=True).encode() for name, value in jsons.items()})
    return files


def _pinpoints(family: str, run: RunFiles | None,
              given: Sequence[Sequence[int]] | None) -> Sequence[Sequence[int]] | None:
    """The LLaVA-NeXT pinpoints: the given ones, else those of the run's anyres tiler (if any)."""
    if given is not None or family != "llava_next" or run is None or run.tiling.get("kind") != "anyres":
        return given
    return run.tiling.get("pinpoints")


def export_hf(model: VLM, out_dir: str, *, family: str | None = None,
              image_grid_pinpoints: Sequence[Sequence[int]] | None = None,
              extra_config: Mapping[str, Any] | None = None,
              max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, dtype: str = "float32",
              run: RunFiles | None = None) -> list[str]:
    """Write ``model`` to ``out_dir`` as a transformers ``family`` checkpoint; returns the file names.

    Args:
      model: a concrete :class:`VLM` (parameters may be sharded over devices).
      family: ``"llava"`` | ``"llava_next"`` | ``"internvl"``; inferred from the config when None.
      image_grid_pinpoints: LLaVA-NeXT ``[[H, W], …]``; default: the run's anyres pinpoints, else the 1.6 list
        scaled to the tower's size.
      extra_config: extra top-level ``config.json`` entries (checked like the rest).
      max_shard_bytes: above this many bytes the weights are split into ``model-0000i-of-0000n`` files
        with a ``model.safetensors.index.json``.
      dtype: ``"float32"`` or ``"bfloat16"`` (tensors rounded to nearest even; ``config.json`` ``dtype``).
      run: the run's tokenizer, template and tiling (run files of an earlier export that this one does not write,
        e.g. a ``tokenizer.json`` beside a new ``tokenizer.model``, are removed); None writes the weights and
        ``config.json`` only.

    Raises :class:`NotExportable` (before writing anything) for models with stages that transformers lacks (GSWA,
    SliceRestore, Self-Mining, DEM, SliME), settings its config cannot express, or with ``run`` a tiler, tokenizer or
    image token its processor cannot reproduce; ``ValueError`` for an unknown ``dtype``.
    """
    family = infer_family(model.cfg) if family is None else family
    config = hf_config(model.cfg, family, image_grid_pinpoints=_pinpoints(family, run, image_grid_pinpoints),
                       extra_config=extra_config)
    config["dtype"] = dtype
    tensors = plan_tensors(model, dtype)
    extra = {} if run is None else run_files(run, model.cfg, family, config)
    files = write_safetensors(tensors, out_dir, max_shard_bytes)
    extra["config.json"] = json.dumps(config, indent=2, sort_keys=True).encode()
    stale = set(COMPANION_FILES) - set(extra) if run is not None else set()  # an earlier export's run files
    for name in stale:
        if os.path.isfile(os.path.join(out_dir, name)):
            os.remove(os.path.join(out_dir, name))
    for name, content in extra.items():
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(content)
    return files + sorted(extra)
