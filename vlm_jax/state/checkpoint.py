"""Orbax checkpoints: train state + Grain data-iterator state (per process) + metadata.

One ``CheckpointManager`` with three items (MaxText's layout):

* ``state``: the :class:`~vlm_jax.train.step.TrainState` ``{step, params, opt_state}``. ``params`` is the
  whole parameter tree, the same layout in every recipe stage (a stage's freeze patterns only decide which
  part of it ``opt_state`` covers), so parameters restore without knowing the recipe. Saved asynchronously;
  restored onto *any* mesh by passing abstract arrays with the new shardings.
* ``data``: the state of the writing stage's data iterator (each recipe stage reads its own data block;
  Grain's handler writes one file per process), so a run resumed inside a stage sees exactly the batches it
  would have seen.
* ``meta``: JSON with the run config, the model options of the stage that wrote the checkpoint, a
  fingerprint of that stage's data (its block, tiling and tokenizer:
  :meth:`vlm_jax.run_config.RunConfig.data_identity`), the layer layout and versions. A resume with a
  different data fingerprint is refused unless explicitly allowed.

Every restore first compares the saved tree (and, on resume, the saved model config) with what it restores
into, and refuses with :class:`CheckpointMismatch` naming the first differing paths (:mod:`.tree_match`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

import flax
import grain
import jax
import orbax.checkpoint as ocp

import vlm_jax
from vlm_jax.state.tree_match import config_mismatches, leaf_table, summarize, tree_mismatches

LAYER_LAYOUT = "scanned"  # both towers stack layers on a leading axis (vlm_jax.nn.stack)


class CheckpointMismatch(ValueError):
    """The checkpoint does not belong to this run or model (data config, model config, tree or layout differ)."""


def fingerprint(data_config: Any) -> str:
    """Stable hash of a data config (JSON with sorted keys)."""
    return hashlib.sha256(json.dumps(data_config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def make_meta(config_dict: dict[str, Any], data_config: Any, stage: str,
              model_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``meta`` item. ``model_options``: the writing stage's dotted model overrides
    (:meth:`vlm_jax.model.VLMConfig.with_options`), so the model as trained is ``config.model`` + these."""
    return {"config": config_dict, "data_fingerprint": fingerprint(data_config), "layer_layout": LAYER_LAYOUT,
            "stage": stage, "model_options": dict(model_options or {}),
            "versions": {"vlm_jax": vlm_jax.__version__, "jax": jax.__version__, "flax": flax.__version__}}


def _is_saved_array(x) -> bool:
    return isinstance(x, ocp.metadata.ArrayMetadata)


class Checkpointer:
    """Saves and restores ``(state, data iterator, meta)`` under ``directory``.

    Args:
      keep: keep the newest ``keep`` checkpoints; keep_every: also keep every ``keep_every``-th step.
    """

    def __init__(self, directory: str, *, keep: int = 3, keep_every: int | None = None, async_save: bool = True):
        self.directory = directory
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, keep_period=keep_every, create=True,
                                               enable_async_checkpointing=async_save)
        self.manager = ocp.CheckpointManager(directory, options=options, item_names=("state", "data", "meta"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, data_iterator: Any, meta: dict[str, Any]) -> None:
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  data=grain.checkpoint.CheckpointSave(data_iterator),
                                  meta=ocp.args.JsonSave(meta))
        self.manager.save(step, args=args)

    def read_meta(self, step: int) -> dict[str, Any]:
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def saved_leaves(self, step: int) -> dict[str, tuple[tuple[int, ...], str]]:
        """``{"params/llm/…/value": (shape, dtype)}`` of the saved ``state`` item (metadata only, no arrays).

        Read with a PyTree handler of its own: the manager knows an item's handler only after saving or
        restoring it in this process.
        """
        step_dir = ocp.path.step.find_step_path(self.manager.directory, ocp.path.step.standard_name_format(),
                                                step=step)
        handler = ocp.PyTreeCheckpointHandler()
        try:
            return leaf_table(handler.metadata(step_dir / "state").tree, is_leaf=_is_saved_array)
        finally:
            handler.close()

    def check_tree(self, step: int, target: Any, what: str) -> None:
        """Raise :class:`CheckpointMismatch` naming the paths where ``target`` and the saved state differ.

        Only the saved subtrees named by ``target``'s top-level keys are compared (a partial restore).
        """
        expected = leaf_table(target)
        tops = {path.split("/", 1)[0] for path in expected}
        saved = {path: v for path, v in self.saved_leaves(step).items() if path.split("/", 1)[0] in tops}
        lines = tree_mismatches(saved, expected, names=("checkpoint", what))
        if lines:
            raise CheckpointMismatch(f"checkpoint {self.directory}/{step} does not fit the {what} "
                                     f"({len(lines)} differing paths):\n{summarize(lines)}")

    def _check_meta(self, step: int, meta: Mapping[str, Any], model_config: Mapping[str, Any] | None) -> None:
        if meta.get("layer_layout") != LAYER_LAYOUT:
            raise CheckpointMismatch(f"checkpoint layer layout {meta.get('layer_layout')!r} != {LAYER_LAYOUT!r}")
        if model_config is not None:
            lines = config_mismatches(meta["config"]["model"], model_config, "model")
            if lines:
                raise CheckpointMismatch(f"the model config differs from the one of checkpoint "
                                         f"{self.directory}/{step}:\n{summarize(lines)}")

    def restore(self, step: int, abstract_state: Any, data_iterator: Any, *, data_config: Any,
                model_config: Mapping[str, Any] | None = None, allow_data_change: bool = False) -> Any:
        """Resume: restore ``step`` into arrays shaped/sharded like ``abstract_state``; sets the iterator state.

        Raises :class:`CheckpointMismatch` if the layer layout, ``model_config`` (the run's ``config.model``,
        when given) or the state tree differ, or ``data_config`` (what the running stage's batches depend on)
        differs from the one the checkpoint was written with (unless allowed).
        """
        meta = self.read_meta(step)
        self._check_meta(step, meta, model_config)
        self.check_tree(step, abstract_state, "train state")
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if meta.get("data_fingerprint") == fingerprint(data_config):
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        elif not allow_data_change:
            raise CheckpointMismatch(
                "the data config differs from the checkpoint's; resuming would not continue the same data "
                "stream. Pass --config.train.allow_data_change=True to resume anyway.")
        else:
            logging.warning("resuming step %d with a changed data config", step)
        return self.manager.restore(step, args=ocp.args.Composite(**items))["state"]

    def restore_params(self, step: int, abstract_params: Any) -> Any:
        """Only the parameters of ``step`` (an Orbax partial restore: the optimizer state is never read),
        shaped/sharded like ``abstract_params``. Raises :class:`CheckpointMismatch` on another layer layout
        or parameter tree."""
        self._check_meta(step, self.read_meta(step), None)
        target = {"params": abstract_params}
        self.check_tree(step, target, "model")
        args = ocp.args.PyTreeRestore(target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
                                      partial_restore=True)
        return self.manager.restore(step, args=ocp.args.Composite(state=args))["state"]["params"]

    def wait(self) -> None:
        """Block until pending asynchronous saves are on disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
