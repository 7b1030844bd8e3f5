"""``score_predictions``: the summary of an evaluation's prediction rows, by benchmark name (the registry,
benchmark_registry.py; the metrics are in benchmark_metrics.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from vlm_jax.evaluate.benchmark_registry import get_benchmark


def score_predictions(benchmark: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Summary of ``rows``: the benchmark's metric over the labelled rows, ``examples`` and ``scored``."""
    return get_benchmark(benchmark).score(rows)
