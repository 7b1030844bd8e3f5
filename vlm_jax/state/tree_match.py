"""Name what differs between a saved tree and the tree a restore expects, before Orbax sees them.

Orbax fails deep inside its handlers (or, for a partial restore, silently skips) when the parameter tree of
a checkpoint and of the model differ. These helpers compare ``path → (shape, dtype)`` tables and nested
config mappings and return readable lines such as ``params/llm/embedder/embedding: checkpoint (128, 32)
float32, model (256, 32) float32``, so that a restore can refuse with the first few of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

MAX_LISTED = 8


def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def leaf_table(tree: Any, *, is_leaf=None) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{"a/b/c": (shape, dtype name)}`` for every array-like leaf (``shape`` and ``dtype`` attributes).

    Path components are dict keys, attribute names and sequence indices alike, so a saved Orbax metadata tree
    (nested dicts and lists) and the live pytree it was written from (dataclasses, NNX states, named tuples)
    give the same paths.
    """
    leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)[0]
    return {"/".join(_key_name(k) for k in path): (tuple(leaf.shape), np.dtype(leaf.dtype).name)
            for path, leaf in leaves if hasattr(leaf, "shape") and hasattr(leaf, "dtype")}


def _describe(entry: tuple[tuple[int, ...], str]) -> str:
    shape, dtype = entry
    return f"{shape} {dtype}"


def tree_mismatches(saved: Mapping[str, tuple], expected: Mapping[str, tuple],
                    names: tuple[str, str] = ("checkpoint", "model")) -> list[str]:
    """Lines naming every path that is missing on one side or differs in shape or dtype, sorted by path."""
    lines = []
    for path in sorted(set(saved) | set(expected)):
        if path not in saved:
            lines.append(f"{path}: missing in the {names[0]} ({names[1]}: {_describe(expected[path])})")
        elif path not in expected:
            lines.append(f"{path}: not in the {names[1]} ({names[0]}: {_describe(saved[path])})")
        elif saved[path] != expected[path]:
            lines.append(f"{path}: {names[0]} {_describe(saved[path])}, {names[1]} {_describe(expected[path])}")
    return lines


def _flat_config(d: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(d, Mapping):
        return {prefix: d}
    out: dict[str, Any] = {}
    for key, value in d.items():
        out.update(_flat_config(value, f"{prefix}.{key}"))
    return out


def config_mismatches(saved: Mapping[str, Any], expected: Mapping[str, Any], prefix: str,
                      names: tuple[str, str] = ("checkpoint", "run")) -> list[str]:
    """Lines naming every dotted key (``prefix.a.b``) of two nested configs whose values differ; both are
    compared as JSON (tuples as lists), the form in which a checkpoint stores its config."""
    a, b = (_flat_config(json.loads(json.dumps(d, default=str)), prefix) for d in (saved, expected))

    def show(table: dict[str, Any], key: str) -> str:
        return repr(table[key]) if key in table else "(absent)"

    return [f"{key}: {names[0]} {show(a, key)}, {names[1]} {show(b, key)}" for key in sorted(set(a) | set(b))
            if key not in a or key not in b or a[key] != b[key]]


def summarize(lines: list[str]) -> str:
    """The first :data:`MAX_LISTED` lines, indented, and how many more there are."""
    shown = "\n".join("  " + line for line in lines[:MAX_LISTED])
    more = len(lines) - MAX_LISTED
    return shown + (f"\n  ... and {more} more" if more > 0 else "")
