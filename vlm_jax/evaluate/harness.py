"""Benchmark evaluation by greedy generation, sharded over every host and device, resumable
(``vlm-jax eval``, :func:`evaluate_checkpoint`, the trainer's final EntityGrid-QA evaluation).

Flow (benchmarks: evaluate/benchmark_registry.py; files: evaluate/prediction_files.py):

1. Every host reads the same records and the questions already answered in ``OUT/shards`` (an earlier,
   killed run); the rest ``R`` is split over hosts, host i taking ``R[i::n]``.
2. Every host runs ``ceil(ceil(|R| / n) / B)`` batches of ``B`` examples: its own records, then copies of
   ``R[0]`` as padding, whose answers are dropped. Each example is the record's prompt rendered as a
   generation prompt exactly like training data (:class:`~vlm_jax.data.pipeline.ProcessExample`); the
   text length is the longest of the batch over all hosts, rounded up to a multiple of
   :data:`LENGTH_MULTIPLE` (few compilations, the same shapes on every host).
3. The batch is left-aligned, made a global array on the mesh (:func:`~vlm_jax.data.device.global_batch`)
   and decoded greedily by the jitted :func:`~vlm_jax.evaluate.generate.make_generate_fn`; the generated
   ids are gathered (``process_allgather``) and each host decodes the rows of its own examples and
   appends them to its shard file, flushed per batch.
4. After a barrier, the shards are merged (exactly one prediction per question, checked), scored, and
   process 0 writes ``OUT/predictions.jsonl`` and ``OUT/metrics.json``. With nothing left to answer
   (a finished evaluation) no model is loaded: only the summary is recomputed.

Multi-host runs need ``OUT`` on a file system all hosts share, and a global batch ``B * n`` divisible by
the mesh's batch axes (``data * fsdp``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from tqdm import tqdm

from vlm_jax import sharding
from vlm_jax.data.batching import SKIP_REASON, pad_batch
from vlm_jax.data.device import global_batch
from vlm_jax.data.pipeline import ProcessExample
from vlm_jax.data.templates import IMAGE_PLACEHOLDER, answer_stop_ids
from vlm_jax.evaluate.benchmark_records import BenchmarkRecord
from vlm_jax.evaluate.benchmark_registry import get_benchmark
from vlm_jax.evaluate.generate import left_align, make_generate_fn
from vlm_jax.evaluate.generate_text import decode_generated
from vlm_jax.evaluate.generation_setup import InferenceBundle, load_for_generation, run_config
from vlm_jax.evaluate.prediction_files import (
    MERGED_FILE,
    METRICS_FILE,
    answered_keys,
    append_rows,
    check_run,
    cut_partial_line,
    merge_predictions,
    question_key,
    shard_path,
    write_json_atomically,
)

LENGTH_MULTIPLE = 64


def record_example(record: BenchmarkRecord) -> dict[str, Any]:
    """The raw example (data contract) of a record's generation prompt: image bytes (read from its path)
    or None, and one human turn holding the prompt, ``<image>`` on its own first line unless placed."""
    image = record.image
    if isinstance(image, str):
        with open(image, "rb") as f:
            image = f.read()
    text = record.prompt
    if image is not None and IMAGE_PLACEHOLDER not in text:
        text = f"{IMAGE_PLACEHOLDER}\n{text}"
    return {"id": str(record.question_id), "image": image, "conversations": [{"from": "human", "value": text}]}


def _process(process: ProcessExample, record: BenchmarkRecord) -> dict[str, Any]:
    example = process(record_example(record), np.random.default_rng(0))
    if SKIP_REASON in example:
        raise ValueError(f"question {record.question_id!r} cannot be evaluated ({example[SKIP_REASON]}): "
                         f"{example['detail']}")
    return example


def _global_max(value: int) -> int:
    if jax.process_count() == 1:
        return value
    return int(np.max(multihost_utils.process_allgather(np.asarray(value))))


def _first_local_row(array: jax.Array) -> int:
    """Global row of this process's first local row of a batch-sharded array (0 when replicated)."""
    indices = array.sharding.addressable_devices_indices_map(array.shape).values()
    return min(index[0].start or 0 for index in indices)


def prediction_row(record: BenchmarkRecord, prediction: str) -> dict[str, Any]:
    """One line of a prediction file (the benchmarks' metrics, benchmark_metrics.py, read these keys)."""
    return {"question_id": record.question_id, "prompt": record.prompt, "prediction": prediction,
            "answers": list(record.answers), "options": list(record.options), "extra": dict(record.extra)}


def predict_shard(bundle: InferenceBundle, records: Sequence[BenchmarkRecord], out_dir: str, *, shard_index: int,
                  shard_count: int, batch_size: int, max_new_tokens: int, progress: bool = True) -> int:
    """Host ``shard_index`` of ``shard_count``: answer ``records[shard_index::shard_count]`` (module docstring,
    steps 2-3) into its shard file; returns how many it answered. Every host must call it with the same
    ``records``: they run the same number of batches. Runs under ``bundle.mesh`` (default: every device
    on the ``fsdp`` axis, the parameters resharded onto it)."""
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"need 0 <= shard_index < shard_count, got {shard_index}, {shard_count}")
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"batch_size and max_new_tokens must be >= 1, got {batch_size}, {max_new_tokens}")
    mesh = bundle.mesh if bundle.mesh is not None else sharding.make_mesh(data=1, fsdp=-1)
    batch_axes = mesh.shape["data"] * mesh.shape["fsdp"]
    if jax.process_count() > 1 and (batch_size * jax.process_count()) % batch_axes:
        raise ValueError(f"global batch {batch_size} x {jax.process_count()} hosts is not divisible by the mesh's "
                         f"batch axes data x fsdp = {batch_axes}")
    mine = list(records[shard_index::shard_count])
    n_batches = math.ceil(math.ceil(len(records) / shard_count) / batch_size)
    tokenizer, processor = bundle.tokenizer, bundle.processor
    graphdef, state = nnx.split(bundle.model)
    state = jax.device_put(state, sharding.state_shardings(state, mesh))
    generate = make_generate_fn(graphdef, stop_ids=answer_stop_ids(tokenizer, bundle.template),
                                pad_id=tokenizer.pad_id)
    process = ProcessExample(processor, tokenizer, bundle.template, max_length=2**31 - 1)
    padding = _process(process, records[0]) if len(mine) < n_batches * batch_size else None
    path = shard_path(out_dir, shard_index, shard_count)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cut_partial_line(path)
    bar = tqdm(range(n_batches), desc=f"eval shard {shard_index}/{shard_count}", leave=False,
               disable=not progress or jax.process_index() != 0)
    with open(path, "a", encoding="utf-8") as f, sharding.use_mesh(mesh):
        for k in bar:
            chunk = mine[k * batch_size:(k + 1) * batch_size]
            examples = [_process(process, r) for r in chunk]
            examples += [padding] * (batch_size - len(examples))
            longest = _global_max(max(len(e["tokens"]) for e in examples))
            batch = pad_batch(examples, batch_size=batch_size, max_views=processor.max_views,
                              tile_size=processor.tile_size, pad_id=tokenizer.pad_id,
                              seq_buckets=[LENGTH_MULTIPLE * math.ceil(longest / LENGTH_MULTIPLE)])
            inputs = global_batch(left_align(batch), mesh)
            out = generate(state, inputs, jax.random.key(0), max_new_tokens=max_new_tokens)
            gathered = multihost_utils.process_allgather(out, tiled=True)
            first = _first_local_row(inputs["tokens"])
            append_rows(f, [prediction_row(r, decode_generated(tokenizer, gathered.tokens[first + j],
                                                               gathered.lengths[first + j],
                                                               gathered.finished[first + j]))
                            for j, r in enumerate(chunk)])
    return len(mine)


def evaluate_records(records: Sequence[BenchmarkRecord], benchmark: str, out_dir: str,
                     bundle_fn: Callable[[], InferenceBundle], *, batch_size: int, max_new_tokens: int,
                     run: dict[str, Any] | None = None, progress: bool = True) -> dict[str, Any]:
    """Answer every record not yet answered in ``out_dir`` on all hosts, merge and score (module docstring).

    ``bundle_fn`` gives the model when there is something to answer. ``run`` (JSON-able: checkpoint, data...)
    with the benchmark and ``max_new_tokens`` describes the evaluation; resuming in an ``out_dir`` described
    differently raises. Returns the summary ``{"benchmark", <metrics>, "examples", "scored"}``.
    """
    scorer = get_benchmark(benchmark)
    keys = [question_key(r.question_id) for r in records]
    if len(set(keys)) != len(keys):
        duplicate = next(r.question_id for r, k in zip(records, keys) if keys.count(k) > 1)
        raise ValueError(f"{benchmark}: duplicate question_id {duplicate!r}")
    if not records:
        raise ValueError(f"{benchmark}: no records to evaluate")
    leader = jax.process_index() == 0
    check_run(out_dir, {"benchmark": benchmark, "max_new_tokens": max_new_tokens, **(run or {})}, write=leader)
    answered = answered_keys(out_dir)
    remaining = [r for r, k in zip(records, keys) if k not in answered]
    if _global_max(len(remaining)) != len(remaining):
        raise RuntimeError(f"hosts see different prediction files in {out_dir}: it must be a shared directory")
    if remaining:
        predict_shard(bundle_fn(), remaining, out_dir, shard_index=jax.process_index(),
                      shard_count=jax.process_count(), batch_size=batch_size, max_new_tokens=max_new_tokens,
                      progress=progress)
    multihost_utils.sync_global_devices("vlm_jax eval: predictions written")
    rows = merge_predictions(out_dir, [r.question_id for r in records])
    summary = {"benchmark": benchmark, **scorer.score(rows)}
    if leader:
        write_json_atomically(os.path.join(out_dir, MERGED_FILE),
                              "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        write_json_atomically(os.path.join(out_dir, METRICS_FILE), json.dumps(summary, indent=1) + "\n")
    return summary


def evaluate_checkpoint(checkpoint: str, benchmark: str, out_dir: str, *, data: str | None = None,
                        image_root: str | None = None, config=None, tokenizer_path: str | None = None,
                        eval_size: int | None = None, batch_size: int | None = None, max_new_tokens: int = 64,
                        progress: bool = True) -> dict[str, Any]:
    """Evaluate a training workdir or HF directory (generation_setup.py) on ``benchmark`` into ``out_dir``.

    ``data`` / ``image_root``: the benchmark files (benchmark_registry.py); ``entitygrid`` is generated from
    the run config instead (``eval_size`` examples, default the config's). ``config`` defaults to the one
    stored with the checkpoint (a HF directory needs it); ``batch_size`` (per host) to its global
    ``data.batch_size`` split over the hosts. Returns the summary of :func:`evaluate_records`.
    """
    if config is None:
        if not os.path.isdir(os.path.join(checkpoint, "checkpoints")):
            raise ValueError(f"{checkpoint} is not a training workdir: pass the config (--config) for the tiling, "
                             "template and batch size")
        config = run_config(checkpoint)
    records = get_benchmark(benchmark).load(data, image_root, config=config, size=eval_size)
    run = {"checkpoint": os.path.abspath(checkpoint), "data": os.path.abspath(data) if data else None,
           "eval_size": eval_size}
    return evaluate_records(records, benchmark, out_dir,
                            lambda: load_for_generation(checkpoint, config, tokenizer_path),
                            batch_size=batch_size or max(1, config.data.batch_size // jax.process_count()),
                            max_new_tokens=max_new_tokens,
                            run=run, progress=progress)
