"""Model parameters of a training run, restored from its newest Orbax checkpoint (for export / generation).

A run directory (``vlm-jax train --workdir=DIR``) holds ``DIR/checkpoints/<step>/{state,data,meta}``
(:mod:`vlm_jax.checkpoint`). The ``meta`` item stores the whole run config, so the model is rebuilt
from it: the recipe stage that wrote the checkpoint gives the trainable / frozen split of the saved
:class:`~vlm_jax.train.step.TrainState`; only ``trainable`` and ``frozen`` are read (the optimizer
state is skipped by an Orbax partial restore, so restoring never allocates the Adam moments).
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import Mesh

from vlm_jax import sharding
from vlm_jax.checkpoint import LAYER_LAYOUT, Checkpointer, CheckpointMismatch
from vlm_jax.model import VLM, VLMConfig
from vlm_jax.train.recipe import parse_recipe, trainable_filter


def restore_params(workdir: str, *, step: int | None = None,
                   mesh: Mesh | None = None) -> tuple[VLMConfig, nnx.GraphDef, nnx.State]:
    """``(model config, graphdef, params)`` of the checkpoint ``step`` (default: newest) of a run in ``workdir``.

    ``nnx.merge(graphdef, params)`` is the :class:`VLM` as trained (with the stage's model options). The
    parameters are sharded over ``mesh`` (default: all devices on the ``fsdp`` axis) by their logical
    axis names. Raises ``FileNotFoundError`` when there is no checkpoint, :class:`CheckpointMismatch`
    when it was written with another layer layout or its stage is not in its own recipe.
    """
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(ckpt_dir):
        raise FileNotFoundError(f"no checkpoints directory in {workdir!r} (expected {ckpt_dir})")
    ckpt = Checkpointer(ckpt_dir, async_save=False)
    try:
        step = ckpt.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {ckpt_dir}")
        meta = ckpt.read_meta(step)
        if meta.get("layer_layout") != LAYER_LAYOUT:
            raise CheckpointMismatch(f"checkpoint layer layout {meta.get('layer_layout')!r} != {LAYER_LAYOUT!r}")
        config = meta["config"]
        stages = {s.name: s for s in parse_recipe(config["train"]["recipe"])}
        if meta.get("stage") not in stages:
            raise CheckpointMismatch(f"checkpoint stage {meta.get('stage')!r} is not in its recipe {sorted(stages)}")
        stage = stages[meta["stage"]]
        model_cfg = VLMConfig.from_dict(config["model"]).with_options(dict(stage.options))

        mesh = sharding.make_mesh(data=1, fsdp=-1) if mesh is None else mesh
        graphdef, abstract = nnx.split(nnx.eval_shape(lambda: VLM(model_cfg, rngs=nnx.Rngs(0))))
        shardings = sharding.state_shardings(abstract, mesh)
        abstract = jax.tree.map(lambda v, s: v.replace(jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s)),
                                abstract, shardings, is_leaf=lambda v: isinstance(v, nnx.Variable))
        _, trainable, frozen = nnx.split(nnx.merge(graphdef, abstract), trainable_filter(stage, abstract), ...)
        target = {"trainable": trainable, "frozen": frozen}
        args = ocp.args.PyTreeRestore(target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
                                      partial_restore=True)
        state = ckpt.manager.restore(step, args=ocp.args.Composite(state=args))["state"]
    finally:
        ckpt.close()
    params = nnx.split(nnx.merge(graphdef, state["trainable"], state["frozen"]))[1]
    return model_cfg, graphdef, params
