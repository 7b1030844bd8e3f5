"""The machine's ceilings as each framework sees them, measured in this process: the float32 matmul rate
(a large square ``A @ B``) and the memory read bandwidth (the sum of a large array). The train-step rows
express achieved FLOP/s as a fraction of the own framework's matmul rate; the decode rows compare the
per-token time with the weight-read floor (weight bytes ÷ the best measured bandwidth)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch

from benchmarks.benchmark import Benchmark
from benchmarks.context import RunContext
from benchmarks.results import Row, within
from benchmarks.timing import interleaved, median

MATMUL_SIDE = {"full": 4096, "quick": 2048, "tiny": 256}
BANDWIDTH_MIB = {"full": 512, "quick": 256, "tiny": 16}
MIN_REPEATS = 5  # these are short: a few more rounds steady the median


def _rates(ctx: RunContext, contestants, work: float) -> tuple[dict[str, float], dict[str, list], dict]:
    seconds, outputs = interleaved(contestants, warmup=max(ctx.warmup, 1), repeats=max(ctx.repeats, MIN_REPEATS))
    return {name: work / median(s) for name, s in seconds.items()}, seconds, outputs


def matmul_peak(ctx: RunContext) -> dict:
    """``{"jax": FLOP/s, "torch": FLOP/s, "side": n, ...}`` of an ``n × n`` float32 matmul (once per run)."""
    return ctx.once("matmul_peak", lambda: _measure_matmul(ctx))


def _measure_matmul(ctx: RunContext) -> dict:
    n = ctx.pick(MATMUL_SIDE)
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    ja, jb, ta, tb = jnp.asarray(a), jnp.asarray(b), torch.from_numpy(a), torch.from_numpy(b)
    product = jax.jit(jnp.matmul)
    rates, seconds, outputs = _rates(ctx, {"jax": lambda: product(ja, jb).block_until_ready(),
                                           "torch": lambda: torch.mm(ta, tb)}, 2.0 * n ** 3)
    ours, ref = np.asarray(outputs["jax"][-1]), outputs["torch"][-1].numpy()
    check = within("max |Δ| / max |C|", float(np.abs(ours - ref).max() / np.abs(ref).max()), 1e-5)
    return dict(rates, side=n, seconds=seconds, check=check)


def read_bandwidth(ctx: RunContext) -> dict:
    """``{"jax": bytes/s, "torch": bytes/s, "best": ..., "bytes": n}`` of summing a float32 array (once per run)."""
    return ctx.once("read_bandwidth", lambda: _measure_bandwidth(ctx))


def _measure_bandwidth(ctx: RunContext) -> dict:
    n_bytes = ctx.pick(BANDWIDTH_MIB) * 2 ** 20
    values = np.random.default_rng(0).random(n_bytes // 4, dtype=np.float32)
    jx, tx = jnp.asarray(values), torch.from_numpy(values)
    total = jax.jit(jnp.sum)
    rates, seconds, outputs = _rates(ctx, {"jax": lambda: total(jx).block_until_ready(),
                                           "torch": lambda: tx.sum()}, float(n_bytes))
    ours, ref = float(outputs["jax"][-1]), float(outputs["torch"][-1])
    check = within("relative |Δ sum|", abs(ours - ref) / abs(ref), 1e-5)
    return dict(rates, best=max(rates.values()), bytes=n_bytes, seconds=seconds, check=check)


def _matmul_rows(ctx: RunContext) -> list[Row]:
    peak = matmul_peak(ctx)
    n = peak["side"]
    return [Row(f"f32 matmul {n}x{n} (GFLOP/s) vs torch", peak["jax"] / 1e9, peak["torch"] / 1e9, True,
                peak["check"], {"side": n, "seconds": peak["seconds"]})]


def _bandwidth_rows(ctx: RunContext) -> list[Row]:
    bw = read_bandwidth(ctx)
    mib = bw["bytes"] // 2 ** 20
    return [Row(f"memory read, sum of {mib} MiB f32 (GB/s) vs torch", bw["jax"] / 1e9, bw["torch"] / 1e9, True,
                bw["check"], {"bytes": bw["bytes"], "seconds": bw["seconds"]})]


MATMUL = Benchmark("matmul_peak", "float32 matmul FLOP/s of jax and torch (the in-process compute ceiling)",
                   _matmul_rows)
BANDWIDTH = Benchmark("read_bandwidth", "memory read bandwidth seen by jax and torch (the decode floor)",
                      _bandwidth_rows)
