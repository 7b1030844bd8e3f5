"""Export a training run (``vlm-jax export --checkpoint=WORKDIR``): its newest parameters with the run's own
tokenizer, chat template and tiling (:class:`~vlm_jax.interop.hf_export.RunFiles`) read from the config stored with
the checkpoint, so the exported directory answers as ``vlm-jax generate --checkpoint=WORKDIR`` does.
"""

from __future__ import annotations

import os

from flax import nnx

from vlm_jax.interop.hf_export import DEFAULT_MAX_SHARD_BYTES, RunFiles, export_hf
from vlm_jax.run_config.build_data import build_tokenizer
from vlm_jax.state.restore import read_run_meta, restore_params


def run_files_of(workdir: str) -> RunFiles:
    """The tokenizer (``config.data.tokenizer``, else the default vocabulary cached in ``WORKDIR/cache``), template
    and tiling of the run in ``workdir``."""
    data = read_run_meta(workdir)["config"]["data"]
    tokenizer = build_tokenizer(data, os.path.join(workdir, "cache"))
    return RunFiles(tokenizer, data.get("tokenizer") or tokenizer.model_path, data["template"], dict(data["tiling"]))


def export_run(workdir: str, out_dir: str, *, family: str | None = None, dtype: str = "float32",
               max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> list[str]:
    """Write the newest checkpoint of ``workdir`` and its run files to ``out_dir``; returns the file names.

    Raises :class:`~vlm_jax.interop.errors.NotExportable` (before writing anything) for a model or run transformers
    cannot express: the papers' stages, a tiler its processor does not have, a tokenizer that does not fit the model.
    """
    run = run_files_of(workdir)
    _, graphdef, params = restore_params(workdir)
    return export_hf(nnx.merge(graphdef, params), out_dir, family=family, dtype=dtype, max_shard_bytes=max_shard_bytes,
                     run=run)
