"""Interleaved timing: warm-up calls, then ``repeats`` rounds in which every contestant runs once, in turn, so
a change of machine load hits both sides alike. Figures are medians of the rounds."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any


def interleaved(contestants: Mapping[str, Callable[[], Any]], *, warmup: int, repeats: int
                ) -> tuple[dict[str, list[float]], dict[str, list[Any]]]:
    """Run every contestant ``warmup`` times, then ``repeats`` interleaved timed rounds.

    Each callable must return only when its work is done (block on device results). Returns the timed
    seconds per contestant and every call's return value (warm-up calls first), for the correctness checks.
    """
    outputs: dict[str, list[Any]] = {name: [] for name in contestants}
    seconds: dict[str, list[float]] = {name: [] for name in contestants}
    for _ in range(warmup):
        for name, run in contestants.items():
            outputs[name].append(run())
    for _ in range(repeats):
        for name, run in contestants.items():
            start = time.perf_counter()
            outputs[name].append(run())
            seconds[name].append(time.perf_counter() - start)
    return seconds, outputs


def median(values: list[float]) -> float:
    return statistics.median(values)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """``(seconds, result)`` of one call."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result
