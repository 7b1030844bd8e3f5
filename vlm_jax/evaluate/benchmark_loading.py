"""``load_benchmark``: the records of one evaluation, by benchmark name (the registry, benchmark_registry.py)."""

from __future__ import annotations

from vlm_jax.evaluate.benchmark_records import BenchmarkRecord
from vlm_jax.evaluate.benchmark_registry import get_benchmark


def load_benchmark(benchmark: str, data: str | None = None, image_root: str | None = None, *,
                   config=None, size: int | None = None) -> list[BenchmarkRecord]:
    """Records of ``benchmark`` read from ``data`` (a file or, for MME, a folder; for ``tfds`` ``NAME:SPLIT``
    with ``image_root`` as the TFDS data_dir); ``entitygrid`` takes the run ``config`` and an optional ``size``."""
    return get_benchmark(benchmark).load(data, image_root, config=config, size=size)
