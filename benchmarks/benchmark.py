"""A benchmark: a name, what it measures, and the function measuring it (entries of :mod:`benchmarks.registry`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from benchmarks.context import SIZES, RunContext
from benchmarks.results import Row


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """``run(ctx) -> rows``: measures vlm_jax and its peer in this process and checks that they agree.
    ``sizes``: the size classes it has a setting for (others skip it)."""

    name: str
    description: str
    run: Callable[[RunContext], list[Row]]
    sizes: tuple[str, ...] = SIZES
