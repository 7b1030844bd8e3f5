"""Model parameters of a training run, restored from its Orbax checkpoint (for export, generation, evaluation).

A run directory (``vlm-jax train --workdir=DIR``) holds ``DIR/checkpoints/<step>/{state,data,meta}``
(:mod:`vlm_jax.state.checkpoint`). The model is rebuilt from ``meta``: the run's ``config.model`` plus the
``model_options`` of the stage that wrote the checkpoint. The parameter tree does not depend on the recipe,
so no stage or freeze pattern is involved, and only ``params`` is read (an Orbax partial restore: restoring
never allocates the optimizer moments).
"""

from __future__ import annotations

import os
from typing import Any

from flax import nnx
from jax.sharding import Mesh

from vlm_jax import sharding
from vlm_jax.model import VLMConfig
from vlm_jax.state.checkpoint import Checkpointer
from vlm_jax.state.params import abstract_params


def _open(workdir: str) -> Checkpointer:
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(ckpt_dir):
        raise FileNotFoundError(f"no checkpoints directory in {workdir!r} (expected {ckpt_dir})")
    return Checkpointer(ckpt_dir, async_save=False)


def _step(ckpt: Checkpointer, step: int | None) -> int:
    step = ckpt.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {ckpt.directory}")
    return step


def read_run_meta(workdir: str, step: int | None = None) -> dict[str, Any]:
    """The ``meta`` item (run config, stage, model options) of checkpoint ``step`` (default: newest)."""
    ckpt = _open(workdir)
    try:
        return ckpt.read_meta(_step(ckpt, step))
    finally:
        ckpt.close()


def trained_model_config(meta: dict[str, Any]) -> VLMConfig:
    """The model as the checkpoint's stage trained it: ``config.model`` with the stage's ``model_options``."""
    return VLMConfig.from_dict(meta["config"]["model"]).with_options(meta.get("model_options", {}))


def restore_params(workdir: str, *, step: int | None = None,
                   mesh: Mesh | None = None) -> tuple[VLMConfig, nnx.GraphDef, nnx.State]:
    """``(model config, graphdef, params)`` of the checkpoint ``step`` (default: newest) of a run in ``workdir``.

    ``nnx.merge(graphdef, params)`` is the :class:`~vlm_jax.model.VLM` as trained. The parameters are sharded
    over ``mesh`` (default: all devices on the ``fsdp`` axis) by their logical axis names. Raises
    ``FileNotFoundError`` when there is no checkpoint, :class:`~vlm_jax.state.checkpoint.CheckpointMismatch`
    naming the differing paths when the saved parameter tree does not fit the model its config builds.
    """
    mesh = sharding.make_mesh(data=1, fsdp=-1) if mesh is None else mesh
    ckpt = _open(workdir)
    try:
        step = _step(ckpt, step)
        model_cfg = trained_model_config(ckpt.read_meta(step))
        graphdef, abstract = abstract_params(model_cfg, mesh)
        params = ckpt.restore_params(step, abstract)
    finally:
        ckpt.close()
    return model_cfg, graphdef, params
