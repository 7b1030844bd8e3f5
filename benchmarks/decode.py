"""Greedy decoding after an image prompt, vlm_jax :func:`vlm_jax.evaluate.generate.generate` vs HF ``generate``
on the same weights and prompts (issue 11, items 1 and 4).

Every row of a batch has a different random image and text, all prompts the same length (no padding). Both
sides decode ``N`` tokens with no stop token (HF: ``eos_token_id=None``; vlm_jax: the stop id is the vocabulary
size, which greedy decoding cannot emit). The check: every generated token identical. Throughput is
``B·N / t(N)`` (prefill included, as a user sees it); the per-token time ``(t(N) - t(1)) / (N - 1)`` leaves the
prefill out and is compared with the weight-read floor: the bytes of the LLM weights one step must read
(layers, final norm, head; not the embedding table) ÷ the best read bandwidth measured in this process.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.benchmark import Benchmark
from benchmarks.context import RunContext
from benchmarks.llava_pair import SIZES, LlavaSize, build_pair, image_prompts, llm_weight_bytes
from benchmarks.peaks import read_bandwidth
from benchmarks.results import Check, Row
from benchmarks.timing import interleaved, median
from vlm_jax.evaluate.generate import generate

SETUPS = {"full": ((1, 8), 597, 64), "quick": ((1, 4), 277, 32), "tiny": ((1, 2), 25, 4)}  # batches, prompt, new


def _ours(model, batch, n: int, vocab: int) -> np.ndarray:
    return np.asarray(generate(model, batch, max_new_tokens=n, stop_ids=[vocab], pad_id=0).tokens)


def _hf(model, prompts, n: int) -> np.ndarray:
    with torch.no_grad():
        out = model.generate(**prompts.hf_inputs, max_new_tokens=n, do_sample=False, pad_token_id=0)
    return out[:, prompts.input_ids.shape[1]:].numpy()


def _batch_rows(ctx: RunContext, hf, ours, size: LlavaSize, batch_size: int, prompt_len: int, n: int,
                floor_seconds: float) -> list[Row]:
    prompts = image_prompts(size, batch_size, prompt_len, 1, seed=batch_size)
    seconds, tokens = interleaved({
        "vlm_jax_1": lambda: _ours(ours, prompts.batch, 1, size.vocab),
        "vlm_jax_n": lambda: _ours(ours, prompts.batch, n, size.vocab),
        "hf_1": lambda: _hf(hf, prompts, 1),
        "hf_n": lambda: _hf(hf, prompts, n)}, warmup=max(ctx.warmup, 1), repeats=ctx.repeats)
    mine, ref = tokens["vlm_jax_n"][-1], tokens["hf_n"][-1]
    equal_rows = int((mine.shape == ref.shape) and (mine == ref).all(axis=1).sum())
    check = Check(equal_rows == batch_size and ref.shape == (batch_size, n),
                  f"{equal_rows}/{batch_size} rows of {n} greedy tokens identical")
    t = {k: median(v) for k, v in seconds.items()}
    per_token = {side: (t[f"{side}_n"] - t[f"{side}_1"]) / (n - 1) for side in ("vlm_jax", "hf")}
    details = dict(batch=batch_size, prompt_tokens=prompt_len, new_tokens=n, seconds=seconds,
                   per_token_seconds=per_token, weight_read_floor_seconds=floor_seconds,
                   per_token_over_floor={k: v / floor_seconds for k, v in per_token.items()},
                   distinct_tokens=int(len(np.unique(ref))))
    label = f"greedy decode b={batch_size}, {n} tokens after a {prompt_len}-token image prompt"
    return [
        Row(f"{label} (tok/s) vs HF generate", batch_size * n / t["vlm_jax_n"], batch_size * n / t["hf_n"], True,
            check, details),
        Row(f"decode b={batch_size} per-token time (ms; weight-read floor {1e3 * floor_seconds:.2f}) vs HF",
            1e3 * per_token["vlm_jax"], 1e3 * per_token["hf"], False),
    ]


def run(ctx: RunContext) -> list[Row]:
    size, (batch_sizes, prompt_len, n) = ctx.pick(SIZES), ctx.pick(SETUPS)
    hf, ours = build_pair(size, seed=1)
    hf.generation_config.eos_token_id = None
    floor_seconds = llm_weight_bytes(size) / read_bandwidth(ctx)["best"]
    return [row for b in batch_sizes for row in _batch_rows(ctx, hf, ours, size, b, prompt_len, n, floor_seconds)]


BENCHMARK = Benchmark("decode", "greedy decode tokens/s after an image prompt vs HF generate, vs the weight-read "
                      "floor", run)
