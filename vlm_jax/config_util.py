"""Strict config construction: a key that is not a field of the target dataclass is an error at load time."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


def check_keys(cls: type, d: Mapping[str, Any], what: str | None = None) -> dict[str, Any]:
    """``dict(d)`` after checking that every key names a field of the dataclass ``cls``."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {what or cls.__name__} keys {unknown}; known: {sorted(known)}")
    return dict(d)
