"""A recipe stage as data: which parameters train, at which learning rate, for how many steps (spec/methods.md
§5.3 INF-LLaVA, §6.5 SliME alternating, LLaVA two-stage)::

    dict(name="align", steps=2000, train=["projector/.*"], lr=1e-3, warmup=0.03,
         lr_scale={"projector/.*": 1.0}, data="pretrain")

``train`` holds regular expressions over ``/``-joined parameter paths (``vlm_jax.train.recipe`` applies them);
``options`` are dotted model switches for this stage (e.g. ``{"slime.top_p": 1.0}``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from vlm_jax.config_util import check_block, check_fields, plain
from vlm_jax.run_config.data import DEFAULT_STREAM


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of ``config.train.recipe``.

    Attributes:
      name: unique within the recipe (checkpoints record it).
      steps: optimizer steps of the stage (> 0).
      train: regular expressions (``re.fullmatch``) of the trainable parameter paths; the rest is frozen.
      lr: peak learning rate (>= 0); warmup: linear warm-up as a fraction of ``steps``, in [0, 1].
      lr_scale: ``(pattern, factor)`` pairs multiplying ``lr`` for matching parameters (first match wins).
      data: the data block the stage reads: ``"default"`` (``config.data``) or a name in ``config.datasets``
        (:mod:`vlm_jax.run_config.data`; its batch size, accumulation and buckets apply to the stage).
      options: ``(dotted model field, value)`` pairs applied to the model config for this stage.
    """

    name: str
    steps: int
    train: tuple[str, ...]
    lr: float
    warmup: float = 0.03
    lr_scale: tuple[tuple[str, float], ...] = ()
    data: str = DEFAULT_STREAM
    options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self):
        check_fields(self, f"stage {self.name!r}", steps=(lambda v: v > 0, "> 0"), lr=(lambda v: v >= 0, ">= 0"),
                     warmup=(lambda v: 0 <= v <= 1, "in [0, 1]"))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], what: str = "stage") -> Stage:
        d = check_block(cls, plain(d), what)
        d["train"] = (d["train"],) if isinstance(d["train"], str) else tuple(d["train"])
        d["lr_scale"] = tuple(dict(d.get("lr_scale", {})).items())
        d["options"] = tuple(dict(d.get("options", {})).items())
        return cls(**d)


def parse_recipe(stages: Sequence[Mapping[str, Any] | Stage], what: str = "config.train.recipe") -> list[Stage]:
    """Stages from their dicts (``Stage`` instances pass through); at least one, names unique."""
    if not stages:
        raise ValueError(f"{what}: a recipe needs at least one stage")
    recipe = [s if isinstance(s, Stage) else Stage.from_dict(s, f"{what}[{i}]") for i, s in enumerate(stages)]
    names = [s.name for s in recipe]
    if len(set(names)) != len(names):
        raise ValueError(f"{what}: stage names must be unique, got {names}")
    return recipe
