"""``config.train``: the recipe and the trainer's settings, typed and validated when the config is loaded."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from vlm_jax.config_util import check_block, check_fields, plain
from vlm_jax.run_config.stage import Stage, parse_recipe

_POSITIVE = (lambda v: v > 0, "> 0")
_NON_NEGATIVE = (lambda v: v >= 0, ">= 0")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The ``config.train`` block (``vlm_jax.train.loop``).

    Attributes:
      recipe: the stages, run one after the other (:class:`~vlm_jax.run_config.stage.Stage`).
      seed: parameter initialisation, data order and step RNG.
      z_loss: weight of ``mean(logsumexp²)`` added to the loss (>= 0).
      grad_clip: global-norm gradient clipping (0: off).
      weight_decay: AdamW decoupled weight decay on matrices (>= 0).
      log_every, ckpt_every: steps between metric logs / checkpoints (> 0).
      keep: newest checkpoints kept (>= 1); keep_every: also keep every ``keep_every``-th step (None: no).
      max_replicated: fail at start-up if more than this fraction of parameter bytes is replicated (None: no check).
      allow_data_change: resume even if the data config differs from the checkpoint's.
      stop_at: end this run after step N (time-sliced / preemptible jobs); the next run resumes (None: no).
      peak_flops: per-device peak FLOP/s for the MFU metric (None: no MFU).
    """

    recipe: tuple[Stage, ...]
    seed: int = 0
    z_loss: float = 0.0
    grad_clip: float = 1.0
    weight_decay: float = 0.0
    log_every: int = 10
    ckpt_every: int = 500
    keep: int = 2
    keep_every: int | None = None
    max_replicated: float | None = None
    allow_data_change: bool = False
    stop_at: int | None = None
    peak_flops: float | None = None

    def __post_init__(self):
        check_fields(self, "config.train", seed=_NON_NEGATIVE, z_loss=_NON_NEGATIVE, grad_clip=_NON_NEGATIVE,
                     weight_decay=_NON_NEGATIVE, log_every=_POSITIVE, ckpt_every=_POSITIVE,
                     keep=_POSITIVE, keep_every=_POSITIVE, max_replicated=(lambda v: 0 <= v <= 1, "in [0, 1]"),
                     stop_at=_POSITIVE, peak_flops=_POSITIVE)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """From the ``config.train`` ConfigDict (or a dict); unknown keys raise with the closest valid ones."""
        d = check_block(cls, plain(d), "config.train")
        d["recipe"] = tuple(parse_recipe(d["recipe"]))
        return cls(**d)
