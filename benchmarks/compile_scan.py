"""Train-step compile time with an LLM of 2 vs N layers (issue 11, item 1): the layers are scanned
(:mod:`vlm_jax.nn.stack`), so the compile time should not grow with depth.

The benchmark model's train step (:mod:`benchmarks.train_step`: same sizes and batch, every parameter trained,
AdamW) is traced,
lowered and compiled from abstract shapes (nothing allocated) for the two depths in turn, ``repeats`` times,
each time from a new ``jax.jit`` so nothing is cached. The check is structural, so machine load cannot flip
it: the compiled program of the N-layer step is no more than 10% longer (HLO text) than the 2-layer one
(unrolled layers would make it about ``N / 2`` times longer, and its compile time with it).
"""

from __future__ import annotations

import dataclasses

from benchmarks.benchmark import Benchmark
from benchmarks.context import RunContext
from benchmarks.llava_pair import SIZES, our_config
from benchmarks.results import Row, within
from benchmarks.timing import interleaved, median
from benchmarks.train_step import SETUPS, benchmark_state, one_device_mesh
from vlm_jax import sharding
from vlm_jax.aot import abstract_batch
from vlm_jax.model import VLMConfig

FLAT_FACTOR = 1.1
DEPTHS = {"full": (2, 24), "quick": (2, 8), "tiny": (2, 4)}  # (shallow, deep) LLM layers


def compile_step(cfg: VLMConfig, batch_size: int, seq_len: int) -> int:
    """Trace, lower and compile the train step of ``cfg`` from abstract shapes (a new ``jax.jit``: no cache);
    returns the length of the compiled program's HLO text."""
    mesh = one_device_mesh()
    stage_state = benchmark_state(cfg, mesh)
    batch = abstract_batch(cfg, mesh, batch_size, seq_len)
    with sharding.use_mesh(mesh):
        return len(stage_state.jit_step().lower(stage_state.abstract, batch).compile().as_text())


def run(ctx: RunContext) -> list[Row]:
    (batch_size, seq_len, _), depths = ctx.pick(SETUPS), ctx.pick(DEPTHS)
    base = our_config(ctx.pick(SIZES))
    configs = {n: dataclasses.replace(base, llm=base.llm.replace(num_layers=n)) for n in depths}
    seconds, hlo_chars = interleaved({f"{n}_layers": (lambda c=cfg: compile_step(c, batch_size, seq_len))
                              for n, cfg in configs.items()}, warmup=0, repeats=ctx.repeats)
    shallow, deep = (median(seconds[f"{n}_layers"]) for n in depths)
    sizes = [hlo_chars[f"{n}_layers"][-1] for n in depths]
    check = within(f"HLO size {depths[1]} / {depths[0]} layers", sizes[1] / sizes[0], FLAT_FACTOR)
    return [Row(f"train-step compile, LLM {depths[1]} layers (s) vs {depths[0]} layers", deep, shallow, False,
                check, dict(depths=depths, batch=batch_size, seq_len=seq_len, seconds=seconds, hlo_chars=sizes))]


BENCHMARK = Benchmark("compile_scan", "train-step compile time, LLM 2 vs N layers (scanned layers)", run)
