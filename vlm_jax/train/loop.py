"""The trainer, readable top to bottom: mesh → tokenizer and tiling → model (abstract, then sharded init) → per
recipe stage: its data iterator (the data block ``Stage.data`` names: source, template, global batch, accumulation,
buckets), its abstract train state (:mod:`vlm_jax.train.stage_state`: trainable filter, optimizer, shardings,
jitted step), a new optimizer state over the same parameter tree, loop with logging / checkpoints → final
evaluation.

Run it with ``vlm-jax train --config=configs/<preset>.py --workdir=DIR``. A run resumes from the newest
checkpoint in ``DIR/checkpoints`` and continues bit-for-bit (same batches, same updates): the checkpoint holds the
running stage's Grain iterator state and a fingerprint of that stage's data block.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

import jax
import numpy as np
from flax import nnx

from vlm_jax import sharding
from vlm_jax.config_util import plain
from vlm_jax.data.device import global_batch
from vlm_jax.data.processor import ImageProcessor
from vlm_jax.evaluate.benchmark_registry import get_benchmark
from vlm_jax.evaluate.generation_setup import InferenceBundle
from vlm_jax.evaluate.harness import evaluate_records
from vlm_jax.interop.checkpoint_io import text_vocab_size
from vlm_jax.interop.hf_vlm import load_base_weights
from vlm_jax.interop.tower_init import init_towers
from vlm_jax.lm.resize_vocab import load_with_grown_vocab
from vlm_jax.model import VLMConfig
from vlm_jax.run_config import DataStream, RunConfig, Stage
from vlm_jax.run_config.build_data import build_tokenizer, build_train_dataset, per_host_batch
from vlm_jax.state.checkpoint import Checkpointer, make_meta
from vlm_jax.state.params import abstract_params, init_params, shardings_of
from vlm_jax.train.logger import MetricsLogger
from vlm_jax.train.stage_state import build_stage_state_from_config

EVAL_MAX_NEW_TOKENS = 16  # EntityGrid-QA answers are a few words: "purple diamond", "bottom-right", "2"


class NonFiniteLoss(FloatingPointError):
    """Loss or gradient norm became NaN/Inf; the last good checkpoint is left intact."""


def stage_bounds(recipe: list[Stage]) -> list[tuple[int, int]]:
    ends = np.cumsum([s.steps for s in recipe]).tolist()
    return list(zip([0] + ends[:-1], ends))


def check_batches(run: RunConfig, hosts: int) -> None:
    """Every stage's global batch splits over the hosts (checked before anything is built: a late stage must
    not fail hours into a run)."""
    for stage in run.train.recipe:
        try:
            per_host_batch(run.stream(stage), hosts)
        except ValueError as err:
            raise ValueError(f"stage {stage.name!r} (data {stage.data!r}): {err}") from None


def _stage_iterator(run: RunConfig, stream: DataStream, index: int, processor, tokenizer):
    """The data iterator of recipe stage ``index`` (its own shuffle: seed ``train.seed + index``)."""
    return iter(build_train_dataset(stream, processor, tokenizer, seed=run.train.seed + index,
                                    hosts=jax.process_count(), worker_count=run.data.worker_count))


def _initial_params(run: RunConfig, model_cfg: VLMConfig, graphdef: nnx.GraphDef, mesh) -> nnx.State:
    """Parameters of a fresh run: random (``train.seed``), then the released weights ``config.init`` names: a whole
    VLM (``hf_dir``) or separate towers (``vision_dir``, ``llm_dir``)."""
    params = init_params(model_cfg, mesh, run.train.seed)
    init = run.init
    if not (init.hf_dir or init.vision_dir or init.llm_dir):
        return params
    model = nnx.merge(graphdef, params)
    if init.hf_dir:  # a checkpoint without the image token grows its tables as transformers does (mean resizing)
        def load() -> list[str]:
            return load_base_weights(model, init.hf_dir, projector=init.projector)

        key = jax.random.key(run.train.seed)
        loaded = load_with_grown_vocab(model.llm, load, text_vocab_size(init.hf_dir), key=key)
    else:
        loaded = init_towers(model, vision_dir=init.vision_dir or None, llm_dir=init.llm_dir or None)
    logging.info("initialised %s from %s", ", ".join(loaded), init.hf_dir or f"{init.vision_dir} + {init.llm_dir}")
    return nnx.state(model)


def train(config, workdir: str) -> dict[str, Any]:
    """Train ``config`` in ``workdir``; returns the final evaluation scores (or the last train metrics)."""
    run = RunConfig.from_config(config)  # typed and checked before anything is built
    tcfg, dcfg = run.train, run.data
    os.makedirs(workdir, exist_ok=True)

    # ---- mesh, model config, data ------------------------------------------------------------------
    mesh = sharding.mesh_from_config(config.mesh)
    model_cfg = VLMConfig.from_dict(config.model.to_dict())
    tokenizer = build_tokenizer(dcfg, os.path.join(workdir, "cache"))
    if tokenizer.vocab_size > model_cfg.llm.vocab_size:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} pieces > model vocab {model_cfg.llm.vocab_size}")
    if tokenizer.image_token_id != model_cfg.image_token_id:
        raise ValueError(f"model image_token_id={model_cfg.image_token_id} but the tokenizer's <image> id is "
                         f"{tokenizer.image_token_id}")
    processor = ImageProcessor(plain(dcfg.tiling), model_cfg)
    check_batches(run, jax.process_count())
    recipe = list(tcfg.recipe)
    bounds = stage_bounds(recipe)
    total_steps = bounds[-1][1]

    # ---- model: abstract shapes and shardings -----------------------------------------------------
    graphdef, abstract = abstract_params(model_cfg, mesh)
    sharding.check_sharded(abstract, shardings_of(abstract), mesh, tcfg.max_replicated)
    n_params = sum(math.prod(x.shape) for x in jax.tree.leaves(abstract))
    logging.info("model: %s parameters on mesh %s", f"{n_params:,}", dict(mesh.shape))

    # ---- checkpoints ------------------------------------------------------------------------------
    ckpt_dir = os.path.join(workdir, "checkpoints")
    ckpt = Checkpointer(ckpt_dir, keep=tcfg.keep, keep_every=tcfg.keep_every)
    resume = ckpt.latest_step() or 0
    logger = MetricsLogger(workdir, total_steps, resume, flops_per_token=6.0 * n_params,
                           peak_flops=tcfg.peak_flops)
    metrics_host: dict[str, float] = {}
    params = None if resume else _initial_params(run, model_cfg, graphdef, mesh)

    # ---- recipe stages: one parameter tree, a new optimizer state and data iterator per stage -----------
    for index, (stage, (first, last)) in enumerate(zip(recipe, bounds)):
        if resume > last:  # finished earlier; a later checkpoint holds all parameters
            continue
        start = max(first, resume)
        stream = run.stream(stage)
        data_iter = _stage_iterator(run, stream, index, processor, tokenizer)
        data_identity = run.data_identity(stage)
        stage_state = build_stage_state_from_config(model_cfg, stage, mesh, tcfg, accum=stream.accum)
        if resume > first:  # the checkpoint was written by this stage: its optimizer and data state continue
            state = ckpt.restore(resume, stage_state.abstract, data_iter, data_config=data_identity,
                                 model_config=config.model.to_dict(), allow_data_change=tcfg.allow_data_change)
            logging.info("resumed from step %d (stage %s, data %s)", resume, stage.name, stage.data)
        else:
            state = stage_state.create(params, start)
        step_fn = stage_state.jit_step()
        stop = last if tcfg.stop_at is None else min(last, tcfg.stop_at)
        meta = make_meta(config.to_dict(), data_identity, stage.name, dict(stage.options))
        with sharding.use_mesh(mesh):
            for step in range(start, stop):
                batch = global_batch(next(data_iter), mesh)
                state, metrics = step_fn(state, batch)
                done = step + 1
                logger.advance()
                if done % tcfg.log_every == 0 or done == last:
                    metrics_host = {k: float(v) for k, v in jax.device_get(metrics).items()}
                    if not (math.isfinite(metrics_host["loss"]) and math.isfinite(metrics_host["grad_norm"])):
                        ckpt.wait()
                        raise NonFiniteLoss(f"non-finite loss/grad at step {done} ({metrics_host}); the last "
                                            f"good checkpoint is step {ckpt.latest_step()}")
                    stats = getattr(data_iter, "stats", None)
                    extra = {f"skipped_{k}": v for k, v in stats.skipped.items()} if stats else {}
                    logger.log(done, {**metrics_host, **extra}, examples=stream.batch_size,
                               tokens=int(metrics_host["tokens"]), sequence_tokens=batch["tokens"].size)
                if done % tcfg.ckpt_every == 0 or done == stop:
                    ckpt.save(done, state, data_iter, meta)
        params, graphdef = state.params, stage_state.graphdef
        if stop < last:  # a time-sliced run (``train.stop_at``): the next run resumes from here
            ckpt.wait()
            logger.close()
            return metrics_host
        resume = last
    ckpt.wait()
    logger.close()

    # ---- final evaluation: greedy answers through the evaluation harness (evaluate/harness.py) --------
    records = get_benchmark("entitygrid").load(config=config) if dcfg.eval_source is not None else []
    if not records:
        return metrics_host
    bundle = InferenceBundle(nnx.merge(graphdef, params), tokenizer, processor, dcfg.template, mesh)
    scores = evaluate_records(records, "entitygrid", os.path.join(workdir, "eval"),
                              lambda: bundle, batch_size=max(1, dcfg.batch_size // jax.process_count()),
                              max_new_tokens=EVAL_MAX_NEW_TOKENS,
                              run={"checkpoint": os.path.abspath(workdir), "step": total_steps})
    logging.info("eval: %s", scores)
    return scores
