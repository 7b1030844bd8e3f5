"""The trainer, readable top to bottom: mesh → data → model (sharded init) → per recipe stage:
trainable/frozen split, optimizer, jitted step, loop with logging / checkpoints → final evaluation.

Run it with ``vlm-jax train --config=configs/<preset>.py --workdir=DIR``. A run resumes from the newest
checkpoint in ``DIR/checkpoints`` and continues bit-for-bit (same batches, same updates).
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from vlm_jax import sharding
from vlm_jax.checkpoint import Checkpointer, make_meta
from vlm_jax.config_util import plain
from vlm_jax.data.build import build_source, build_tokenizer, build_train_dataset
from vlm_jax.data.device import batch_sharding, global_batch
from vlm_jax.data.processor import ImageProcessor
from vlm_jax.evaluate.benchmark_loading import entitygrid_records
from vlm_jax.evaluate.generation_setup import InferenceBundle
from vlm_jax.evaluate.harness import evaluate_records
from vlm_jax.interop.hf_vlm import load_base_weights
from vlm_jax.model import VLM, VLMConfig
from vlm_jax.run_config import RunConfig
from vlm_jax.train.logger import MetricsLogger
from vlm_jax.train.optimizer import make_optimizer, opt_state_shardings
from vlm_jax.train.recipe import Stage, trainable_filter
from vlm_jax.train.step import TrainState, make_train_step

EVAL_MAX_NEW_TOKENS = 16  # EntityGrid-QA answers are a few words: "purple diamond", "bottom-right", "2"


class NonFiniteLoss(FloatingPointError):
    """Loss or gradient norm became NaN/Inf; the last good checkpoint is left intact."""


def stage_bounds(recipe: list[Stage]) -> list[tuple[int, int]]:
    ends = np.cumsum([s.steps for s in recipe]).tolist()
    return list(zip([0] + ends[:-1], ends))


def _abstract(tree, shardings):
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def stage_graphdef(model_cfg: VLMConfig, stage: Stage):
    """The model structure of a stage: ``stage.options`` override model fields (e.g. SliME's γ, stage II's
    ``slime.local_only``); the parameter tree is the same in every stage."""
    stage_cfg = model_cfg.with_options(dict(stage.options))
    return nnx.split(nnx.eval_shape(lambda: VLM(stage_cfg, rngs=nnx.Rngs(0))))[0]


def init_stage_state(graphdef, params, stage: Stage, opt_kw: dict, step: int, mesh):
    """Split ``params`` into the stage's trainable / frozen parts and create the optimizer state sharded
    like the parameters (``opt_state_shardings``: ``init`` never reads values, so nothing would propagate)."""
    model = nnx.merge(graphdef, params)
    graphdef, trainable, frozen = nnx.split(model, trainable_filter(stage, params), ...)
    optimizer = make_optimizer(stage, trainable, **opt_kw)
    opt_sh = opt_state_shardings(jax.eval_shape(optimizer.init, trainable), trainable)
    opt_state = jax.jit(optimizer.init, out_shardings=opt_sh)(trainable)
    state = TrainState(jnp.asarray(step, jnp.int32), trainable, frozen, opt_state)
    replicated = NamedSharding(mesh, P())
    state = jax.tree.map(lambda x: x if isinstance(x.sharding, NamedSharding) else jax.device_put(x, replicated),
                         state)
    shardings = jax.tree.map(lambda x: x.sharding, state)
    return graphdef, optimizer, state, shardings


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
    data_iter = iter(build_train_dataset(dcfg, processor, tokenizer, tcfg.seed))
    recipe = list(tcfg.recipe)
    bounds = stage_bounds(recipe)
    total_steps = bounds[-1][1]
    global_bs = dcfg.batch_size * jax.process_count()
    if global_bs % tcfg.accum:
        raise ValueError(f"batch size {global_bs} is not divisible by accum={tcfg.accum}")

    # ---- model: abstract shapes → sharded parameters -----------------------------------------------
    graphdef, params, param_shardings = sharding.init_sharded(
        lambda: VLM(model_cfg, rngs=nnx.Rngs(tcfg.seed)), mesh)
    sharding.check_sharded(params, param_shardings, mesh, tcfg.max_replicated)
    hf_dir = run.init.hf_dir
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if hf_dir and not os.path.isdir(ckpt_dir):  # a fresh run starts from released weights
        model = nnx.merge(graphdef, params)
        loaded = load_base_weights(model, hf_dir)
        params = nnx.state(model)
        logging.info("initialised %s from %s", ", ".join(loaded), hf_dir)
    n_params = sum(math.prod(x.shape) for x in jax.tree.leaves(params))
    logging.info("model: %s parameters on mesh %s", f"{n_params:,}", dict(mesh.shape))

    # ---- checkpoints ------------------------------------------------------------------------------
    ckpt = Checkpointer(ckpt_dir, keep=tcfg.keep, keep_every=tcfg.keep_every)
    resume = ckpt.latest_step() or 0
    logger = MetricsLogger(workdir, total_steps, resume, flops_per_token=6.0 * n_params,
                           peak_flops=tcfg.peak_flops)
    opt_kw = dict(weight_decay=tcfg.weight_decay, grad_clip=tcfg.grad_clip)
    metrics_host: dict[str, float] = {}

    # ---- recipe stages ----------------------------------------------------------------------------
    for stage, (first, last) in zip(recipe, bounds):
        if resume > last:  # finished earlier; a later stage's checkpoint holds all parameters
            continue
        start = max(first, resume)
        graphdef = stage_graphdef(model_cfg, stage)
        graphdef, optimizer, state, state_sh = init_stage_state(graphdef, params, stage, opt_kw, start, mesh)
        if resume > first:
            state = ckpt.restore(resume, _abstract(state, state_sh), data_iter, data_config=config.data.to_dict(),
                                 allow_data_change=tcfg.allow_data_change)
            logging.info("resumed from step %d (stage %s)", resume, stage.name)
        step_fn = jax.jit(make_train_step(graphdef, optimizer, z_loss=tcfg.z_loss, accum=tcfg.accum,
                                          seed=tcfg.seed),
                          in_shardings=(state_sh, batch_sharding(mesh)), out_shardings=(state_sh, None),
                          donate_argnums=(0,))
        stop = last if tcfg.stop_at is None else min(last, tcfg.stop_at)
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
                    logger.log(done, {**metrics_host, **extra}, examples=global_bs,
                               tokens=int(metrics_host["tokens"]), sequence_tokens=batch["tokens"].size)
                if done % tcfg.ckpt_every == 0 or done == stop:
                    ckpt.save(done, state, data_iter, make_meta(config.to_dict(), config.data.to_dict(), stage.name))
        params = nnx.split(nnx.merge(graphdef, state.trainable, state.frozen))[1]
        if stop < last:  # a time-sliced run (``train.stop_at``): the next run resumes from here
            ckpt.wait()
            logger.close()
            return metrics_host
        resume = last
    ckpt.wait()
    logger.close()

    # ---- final evaluation: greedy answers through the evaluation harness (evaluate/harness.py) --------
    eval_source = build_source(dcfg.eval_source) if dcfg.eval_source is not None else []
    if not len(eval_source):
        return metrics_host
    bundle = InferenceBundle(nnx.merge(graphdef, params), tokenizer, processor, dcfg.template, mesh)
    scores = evaluate_records(entitygrid_records(eval_source), "entitygrid", os.path.join(workdir, "eval"),
                              lambda: bundle, batch_size=dcfg.batch_size, max_new_tokens=EVAL_MAX_NEW_TOKENS,
                              run={"checkpoint": os.path.abspath(workdir), "step": total_steps})
    logging.info("eval: %s", scores)
    return scores
