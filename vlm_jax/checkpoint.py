"""Orbax checkpoints: train state + Grain data-iterator state (per process) + metadata.

One ``CheckpointManager`` with three items (MaxText's layout):

* ``state``: the :class:`~vlm_jax.train.step.TrainState` (step, trainable, frozen, optimizer state),
  saved asynchronously; restored onto *any* mesh by passing abstract arrays with the new shardings.
* ``data``: the data iterator's state (Grain's handler writes one file per process), so a resumed run
  sees exactly the batches it would have seen.
* ``meta``: JSON with the config, a fingerprint of the data config, the layer layout and versions. A
  resume with a different data fingerprint is refused unless explicitly allowed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import flax
import grain
import jax
import orbax.checkpoint as ocp

import vlm_jax

LAYER_LAYOUT = "scanned"  # both towers stack layers on a leading axis (vlm_jax.nn.stack)


class CheckpointMismatch(ValueError):
    """The checkpoint does not belong to this run (data config or layout differ)."""


def fingerprint(data_config: Any) -> str:
    """Stable hash of a data config (JSON with sorted keys)."""
    return hashlib.sha256(json.dumps(data_config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def make_meta(config_dict: dict[str, Any], data_config: Any, stage: str) -> dict[str, Any]:
    return {"config": config_dict, "data_fingerprint": fingerprint(data_config), "layer_layout": LAYER_LAYOUT,
            "stage": stage, "versions": {"vlm_jax": vlm_jax.__version__, "jax": jax.__version__,
                                         "flax": flax.__version__}}


class Checkpointer:
    """Saves and restores ``(state, data iterator, meta)`` under ``directory``.

    Args:
      keep: keep the newest ``keep`` checkpoints; keep_every: also keep every ``keep_every``-th step.
    """

    def __init__(self, directory: str, *, keep: int = 3, keep_every: int | None = None, async_save: bool = True):
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

    def restore(self, step: int, abstract_state: Any, data_iterator: Any, *, data_config: Any,
                allow_data_change: bool = False) -> Any:
        """Restore ``step`` into arrays shaped/sharded like ``abstract_state``; sets the iterator state.

        Raises :class:`CheckpointMismatch` if the data config changed (unless allowed) or the layer layout
        differs.
        """
        meta = self.read_meta(step)
        if meta.get("layer_layout") != LAYER_LAYOUT:
            raise CheckpointMismatch(f"checkpoint layer layout {meta.get('layer_layout')!r} != {LAYER_LAYOUT!r}")
        if meta.get("data_fingerprint") != fingerprint(data_config):
            if not allow_data_change:
                raise CheckpointMismatch(
                    "the data config differs from the checkpoint's; resuming would not continue the same data "
                    "stream. Pass --config.train.allow_data_change=True to resume anyway.")
            logging.warning("resuming step %d with a changed data config", step)
            args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
            return self.manager.restore(step, args=args)["state"]
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                  data=grain.checkpoint.CheckpointRestore(data_iterator))
        return self.manager.restore(step, args=args)["state"]

    def wait(self) -> None:
        """Block until pending asynchronous saves are on disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
