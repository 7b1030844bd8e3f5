"""Train-step compile time with an LLM of 2 vs N layers (issue 11, item 1): the layers are scanned
(:mod:`vlm_jax.nn.stack`), so the compile time should not grow with depth.

The benchmark model's train step (:mod:`benchmarks.train_step`: every parameter trained, AdamW) is traced,
lowered and compiled from abstract shapes (nothing allocated) for the two depths in turn, ``repeats`` times,
each time from a new ``jax.jit`` so nothing is cached. Check: ``t(N) ≤ 1.5 · t(2)`` (unrolled layers would
take about ``N / 2`` times longer).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from benchmarks.benchmark import Benchmark
from benchmarks.context import RunContext
from benchmarks.llava_pair import LlavaSize, our_config
from benchmarks.results import Row, within
from benchmarks.timing import interleaved, median
from benchmarks.train_step import QUICK_SIZE, TINY_SIZE, training_parts
from vlm_jax.model import VLM, VLMConfig, dummy_batch
from vlm_jax.train.step import TrainState, make_train_step

FLAT_FACTOR = 1.5
SETUPS = {  # (model, batch, seq_len, (shallow, deep) LLM layers)
    "full": (LlavaSize(), 4, 1024, (2, 24)),
    "quick": (QUICK_SIZE, 2, 384, (2, 8)),
    "tiny": (TINY_SIZE, 2, 48, (2, 4)),
}


def compile_step(cfg: VLMConfig, batch_size: int, seq_len: int) -> None:
    """Trace, lower and compile the train step of ``cfg`` from abstract shapes (a new ``jax.jit``: no cache)."""
    graphdef, trainable, frozen, optimizer = training_parts(nnx.eval_shape(lambda: VLM(cfg, rngs=nnx.Rngs(0))))
    state = TrainState(jax.ShapeDtypeStruct((), jnp.int32), trainable, frozen,
                       jax.eval_shape(optimizer.init, trainable))
    batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in dummy_batch(cfg, batch_size, seq_len).items()}
    jax.jit(make_train_step(graphdef, optimizer), donate_argnums=(0,)).lower(state, batch).compile()


def run(ctx: RunContext) -> list[Row]:
    size, batch_size, seq_len, depths = ctx.pick(SETUPS)
    base = our_config(size)
    configs = {n: dataclasses.replace(base, llm=base.llm.replace(num_layers=n)) for n in depths}
    seconds, _ = interleaved({f"{n}_layers": (lambda c=cfg: compile_step(c, batch_size, seq_len))
                              for n, cfg in configs.items()}, warmup=0, repeats=ctx.repeats)
    shallow, deep = (median(seconds[f"{n}_layers"]) for n in depths)
    check = within(f"t({depths[1]}) / t({depths[0]})", deep / shallow, FLAT_FACTOR)
    return [Row(f"train-step compile, LLM {depths[1]} layers (s) vs {depths[0]} layers", deep, shallow, False,
                check, dict(depths=depths, batch=batch_size, seq_len=seq_len, seconds=seconds))]


BENCHMARK = Benchmark("compile_scan", "train-step compile time, LLM 2 vs N layers (scanned layers)", run)
