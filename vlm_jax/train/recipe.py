"""Stage recipes applied to parameters (the stages themselves, typed: :mod:`vlm_jax.run_config.stage`).

``train`` is a list of regular expressions matched (``re.fullmatch``) against ``/``-joined parameter
paths such as ``llm/layers/attn/q/kernel``; parameters matching none are frozen: they get no gradient
and no optimizer state. ``lr_scale`` multiplies the stage learning rate for matching groups (first
match wins). A pattern that matches no parameter is an error (a typo must not silently freeze a model).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import jax
from flax import nnx

from vlm_jax.run_config.stage import Stage, parse_recipe

__all__ = ["Stage", "lr_labels", "parse_recipe", "path_str", "trainable_filter"]


def recipe_from_config(train_cfg) -> list[Stage]:
    """The stages of a run's ``config.train.recipe`` (a list of dicts or ``ConfigDict``s)."""
    return parse_recipe([s.to_dict() if hasattr(s, "to_dict") else dict(s) for s in train_cfg.recipe])


def pick_stage(train_cfg, name: str | None) -> Stage:
    """A recipe stage by name; by default the last one (in every preset it trains the most parameters)."""
    recipe = recipe_from_config(train_cfg)
    if name is None:
        return recipe[-1]
    by_name = {s.name: s for s in recipe}
    if name not in by_name:
        raise ValueError(f"no recipe stage {name!r}; stages: {list(by_name)}")
    return by_name[name]


def path_str(path: Sequence[Any]) -> str:
    """``("llm", "layers", "q", "kernel")`` or a jax key path → ``"llm/layers/q/kernel"``."""
    return "/".join(str(getattr(p, "key", getattr(p, "idx", p))) for p in path
                    if not isinstance(p, jax.tree_util.GetAttrKey))


def trainable_filter(stage: Stage, state: nnx.State):
    """An ``nnx`` filter ``(path, value) -> bool`` for the stage's trainable parameters.

    Raises if a pattern of ``stage.train`` or ``stage.lr_scale`` matches no parameter of ``state``.
    """
    patterns = [re.compile(p) for p in stage.train]
    paths = [path_str(p) for p, _ in nnx.to_flat_state(state)]
    for pat in patterns + [re.compile(p) for p, _ in stage.lr_scale]:
        if not any(pat.fullmatch(p) for p in paths):
            raise ValueError(f"stage {stage.name!r}: pattern {pat.pattern!r} matches no parameter; "
                             f"examples of paths: {paths[:6]}")

    def is_trainable(path, _value) -> bool:
        s = path_str(path)
        return any(p.fullmatch(s) for p in patterns)

    return is_trainable


def lr_labels(stage: Stage, trainable: nnx.State) -> Any:
    """Pytree of group labels (``"g0"``, ``"g1"``… by ``lr_scale`` entry, ``"base"`` otherwise)."""
    scales = [(re.compile(p), i) for i, (p, _) in enumerate(stage.lr_scale)]

    def label(path, _leaf):
        s = path_str(path)
        for pat, i in scales:
            if pat.fullmatch(s):
                return f"g{i}"
        return "base"

    return jax.tree_util.tree_map_with_path(label, trainable)
