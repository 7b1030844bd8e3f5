"""The one abstract-state builder: the train state of a recipe stage on a mesh, before any array exists.

From ``(VLMConfig, Stage, mesh, optimizer settings)`` :func:`build_stage_state` derives, MaxText style, with
``nnx.eval_shape`` / ``jax.eval_shape`` and the logical-axis rules of :mod:`vlm_jax.sharding`:

* the stage's model structure (``graphdef``: the stage's ``options`` applied to the model config),
* its trainable filter (the recipe's freeze patterns, :func:`~vlm_jax.train.recipe.trainable_filter`),
* its optimizer (:func:`~vlm_jax.train.optimizer.make_optimizer`, over the trainable parameters only),
* the abstract :class:`~vlm_jax.train.step.TrainState` ``{step, params, opt_state}``: shapes, dtypes and a
  ``NamedSharding`` on every leaf (optimizer moments sharded like their parameters).

The trainer (:mod:`vlm_jax.train.loop`) creates the concrete state from it (:meth:`StageState.create`) or
restores a checkpoint into it; ``vlm-jax compile`` (:mod:`vlm_jax.aot`) lowers :meth:`StageState.jit_step`
on it for a TPU topology; inference restores only ``params``, whose tree is the same in every stage
(:func:`vlm_jax.state.params.abstract_params`, :mod:`vlm_jax.state.restore`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from vlm_jax.data.device import batch_sharding
from vlm_jax.model import VLMConfig
from vlm_jax.state.params import abstract_params, shardings_of
from vlm_jax.state.tree_match import leaf_table, summarize, tree_mismatches
from vlm_jax.train.optimizer import make_optimizer, opt_state_shardings
from vlm_jax.train.recipe import Stage, trainable_filter
from vlm_jax.train.step import TrainState, make_train_step


@dataclasses.dataclass(frozen=True)
class StageState:
    """The abstract train state of one recipe stage and what acts on it (built by :func:`build_stage_state`).

    ``abstract`` leaves are ``jax.ShapeDtypeStruct`` with shardings; ``is_trainable`` is an ``nnx`` filter
    ``(path, value) -> bool`` over the parameter tree; ``step_options`` are :func:`make_train_step`'s
    ``z_loss``, ``accum`` and ``seed``.
    """

    stage: Stage
    mesh: Mesh
    graphdef: nnx.GraphDef
    is_trainable: Callable[[tuple, Any], bool]
    optimizer: optax.GradientTransformation
    abstract: TrainState
    step_options: Mapping[str, Any]

    @property
    def shardings(self) -> TrainState:
        return shardings_of(self.abstract)

    def split(self, params: nnx.State) -> tuple[nnx.State, nnx.State]:
        """``(trainable, frozen)`` parts of a parameter state (abstract or concrete)."""
        return nnx.split_state(params, self.is_trainable, ...)

    def check_params(self, params: nnx.State) -> None:
        """Raise ``ValueError`` naming the paths where ``params`` is not this stage's parameter tree."""
        lines = tree_mismatches(leaf_table(params), leaf_table(self.abstract.params), ("parameters", "stage model"))
        if lines:
            raise ValueError(f"the parameters do not fit the model of stage {self.stage.name!r} (its options "
                             f"{dict(self.stage.options)} must not change the parameter tree):\n{summarize(lines)}")

    def create(self, params: nnx.State, step: int) -> TrainState:
        """The concrete state at ``step``: ``params`` placed on their shardings, a fresh optimizer state for the
        stage's trainable part (created sharded: ``init`` reads no values, so nothing would propagate)."""
        self.check_params(params)
        shardings = self.shardings
        params = jax.device_put(params, shardings.params)
        opt_state = jax.jit(self.optimizer.init, out_shardings=shardings.opt_state)(self.split(params)[0])
        return TrainState(jax.device_put(jnp.asarray(step, jnp.int32), shardings.step), params, opt_state)

    @property
    def train_step(self) -> Callable:
        """The un-jitted ``step(state, batch) -> (state, metrics)`` (:func:`make_train_step`)."""
        return make_train_step(self.graphdef, self.optimizer, self.is_trainable, **self.step_options)

    def jit_step(self) -> Callable:
        """:attr:`train_step` jitted with the state's shardings in and out, the batch sharded over the batch
        axes, and the input state donated (its buffers become the new state's)."""
        state_sh = self.shardings
        return jax.jit(self.train_step, in_shardings=(state_sh, batch_sharding(self.mesh)),
                       out_shardings=(state_sh, None), donate_argnums=(0,))


def build_stage_state(model_cfg: VLMConfig, stage: Stage, mesh: Mesh, *, optimizer: Mapping[str, Any] | None = None,
                      z_loss: float = 0.0, accum: int = 1, seed: int = 0) -> StageState:
    """The abstract train state of ``stage`` on ``mesh`` (module docstring).

    Args:
      model_cfg: the run's model; ``stage.options`` are applied on top of it.
      optimizer: keyword arguments of :func:`make_optimizer` (``weight_decay``, ``grad_clip``, ``eps``, ...).
      z_loss, accum, seed: the train step's options (:func:`make_train_step`).
    """
    graphdef, params = abstract_params(model_cfg.with_options(dict(stage.options)), mesh)
    is_trainable = trainable_filter(stage, params)
    trainable, _ = nnx.split_state(params, is_trainable, ...)
    opt = make_optimizer(stage, trainable, **dict(optimizer or {}))
    opt_shapes = jax.eval_shape(opt.init, trainable)
    opt_state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                             opt_shapes, opt_state_shardings(opt_shapes, trainable))
    step = jax.ShapeDtypeStruct((), jnp.int32, sharding=NamedSharding(mesh, P()))
    return StageState(stage, mesh, graphdef, is_trainable, opt, TrainState(step, params, opt_state),
                      dict(z_loss=z_loss, accum=accum, seed=seed))


def build_stage_state_from_config(model_cfg: VLMConfig, stage: Stage, mesh: Mesh, train_cfg, accum: int) -> StageState:
    """:func:`build_stage_state` with the optimizer and step options of a run's ``config.train`` and the gradient
    accumulation of the stage's data block (``DataStream.accum``)."""
    return build_stage_state(model_cfg, stage, mesh,
                             optimizer=dict(weight_decay=train_cfg.weight_decay, grad_clip=train_cfg.grad_clip),
                             z_loss=train_cfg.z_loss, accum=accum, seed=train_cfg.seed)
