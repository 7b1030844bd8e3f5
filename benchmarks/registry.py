"""The one registry of benchmarks: name → :class:`~benchmarks.benchmark.Benchmark`, in the order they run."""

from __future__ import annotations

from benchmarks import compile_scan, decode, peaks, tiling_speed, tpu_projection, train_step
from benchmarks.benchmark import Benchmark

BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    peaks.MATMUL, peaks.BANDWIDTH, train_step.BENCHMARK, decode.BENCHMARK, tiling_speed.INTERNVL,
    tiling_speed.ANYRES, compile_scan.BENCHMARK, tpu_projection.BENCHMARK)}


def select(names: str | None) -> list[Benchmark]:
    """The benchmarks named in a comma-separated list (all, in registry order, when ``names`` is empty)."""
    if not names:
        return list(BENCHMARKS.values())
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    return [BENCHMARKS[n] for n in wanted]
