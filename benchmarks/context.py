"""What every benchmark receives: the size class, warm-up / repeat counts, and a per-run memo so that shared
measurements (the matmul peak, the memory bandwidth) are taken once per run and reused by every row."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

SIZES = ("full", "quick", "tiny")
"""``full``: the issue's sizes; ``quick``: about two minutes for the whole suite; ``tiny``: the smoke test."""

T = TypeVar("T")


@dataclasses.dataclass
class RunContext:
    """``size`` in :data:`SIZES`; ``warmup`` untimed and ``repeats`` timed rounds per measurement."""

    size: str = "full"
    warmup: int = 1
    repeats: int = 3
    memo: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.size not in SIZES:
            raise ValueError(f"size={self.size!r}; known: {SIZES}")
        if self.warmup < 0 or self.repeats < 1:
            raise ValueError(f"warmup={self.warmup} must be >= 0 and repeats={self.repeats} >= 1")

    def pick(self, by_size: dict[str, T]) -> T:
        """The entry of ``by_size`` for this run's size."""
        return by_size[self.size]

    def once(self, key: str, measure: Callable[[], T]) -> T:
        """``measure()`` the first time ``key`` is asked for in this run, the remembered value afterwards."""
        if key not in self.memo:
            self.memo[key] = measure()
        return self.memo[key]
