"""Training system: recipe freeze masks, sharded step == single-device step, bit-exact resume, NaN stop."""

import json
import os

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from tiny_models import random_batch, tiny_internvl

from vlm_jax import sharding
from vlm_jax.data.device import global_batch
from vlm_jax.state.checkpoint import Checkpointer, CheckpointMismatch
from vlm_jax.state.params import init_params
from vlm_jax.train.loop import NonFiniteLoss, train
from vlm_jax.train.recipe import Stage, parse_recipe, trainable_filter
from vlm_jax.train.stage_state import build_stage_state

CONFIG_PATH = os.path.join(os.path.dirname(__file__), "..", "configs", "tiny_entitygrid.py")


def tiny_train_config(steps: int = 6, **train_overrides):
    """The embedded default shrunk to seconds: 32 px canvas, 16 px tiles, 1-layer towers."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tiny_entitygrid", CONFIG_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config(f"steps={steps}")
    c.model.vision.update(image_size=16, patch=4, hidden=32, layers=1, mlp=64)
    c.model.llm.update(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, head_dim=16, mlp_dim=64)
    c.data.source.update(canvas=32, size=512)
    c.data.eval_source = None  # the final evaluation is tested in test_eval_harness.py
    c.data.update(batch_size=8, seq_buckets=(128,))
    c.train.update(log_every=1, ckpt_every=3, **train_overrides)
    return c


def _stage(train, steps=4, lr=1e-2):
    return Stage.from_dict(dict(name="s", steps=steps, train=train, lr=lr, warmup=0.0))


def _one_device():
    return sharding.make_mesh(data=1, devices=jax.devices()[:1])


@pytest.fixture(scope="module")
def model_and_batch():
    cfg = tiny_internvl()
    return cfg, init_params(cfg, _one_device(), seed=0), random_batch(cfg, batch_size=8, seq_len=96)


def _flat(state):
    return [(p, np.asarray(v[...])) for p, v in nnx.to_flat_state(state)]


def test_llava_two_stage_recipe_freezes_and_has_no_frozen_optimizer_state(model_and_batch):
    cfg, params, batch = model_and_batch
    recipe = parse_recipe([dict(name="align", steps=2, train=["projector/.*"], lr=1e-2, warmup=0.0),
                           dict(name="sft", steps=2, train=["projector/.*", "llm/.*"], lr=1e-3, warmup=0.0)])
    for stage in recipe:
        built = build_stage_state(cfg, stage, _one_device(), optimizer=dict(weight_decay=0.0, grad_clip=1.0))
        state = built.create(params, 0)
        trainable, frozen = built.split(state.params)
        trainable_paths = {p for p, _ in nnx.to_flat_state(trainable)}
        assert all(p[0] in ("projector", "llm") for p in trainable_paths)
        assert not any(p[0] == "llm" for p in trainable_paths) or stage.name == "sft"
        # optimizer moments exist exactly for the trainable parameters
        n_train = sum(x.size for x in jax.tree.leaves(trainable))
        adam = [s for s in jax.tree.leaves(state.opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
                if isinstance(s, optax.ScaleByAdamState)]
        assert sum(x.size for x in jax.tree.leaves(adam[0].mu)) == n_train
        step = jax.jit(built.train_step)
        new, metrics = step(state, batch)
        new, metrics = step(new, batch)
        new_trainable, new_frozen = built.split(new.params)
        for (p, a), (_, b) in zip(_flat(frozen), _flat(new_frozen)):
            np.testing.assert_array_equal(a, b, err_msg=str(p))
        assert all(not np.array_equal(a, b) for (_, a), (_, b) in zip(_flat(trainable), _flat(new_trainable)))


def test_pattern_matching_nothing_is_an_error(model_and_batch):
    _, params, _ = model_and_batch
    with pytest.raises(ValueError, match="matches no parameter"):
        trainable_filter(_stage(["projektor/.*"]), params)


def test_sharded_train_step_equals_single_device(model_and_batch):
    cfg, _, batch = model_and_batch
    stage = _stage([".*"])
    # Adam's first update is ~sign(g): for gradients near 0 that is ill-conditioned (reduction order decides the
    # sign), so eps=1 makes the update proportional to g and the comparison well-posed.
    opt_kw = dict(weight_decay=0.01, grad_clip=1.0, eps=1.0)
    results = []
    for mesh in (_one_device(), sharding.make_mesh(data=2, fsdp=2, tensor=2)):
        built = build_stage_state(cfg, stage, mesh, optimizer=opt_kw, z_loss=1e-4)
        state = built.create(init_params(cfg, mesh, seed=0), 0)
        with sharding.use_mesh(mesh):
            new, metrics = built.jit_step()(state, global_batch(batch, mesh))
        results.append((jax.device_get(metrics), jax.tree.map(np.asarray, jax.device_get(new.params))))
    (m1, p1), (m8, p8) = results
    np.testing.assert_allclose(m8["loss"], m1["loss"], rtol=1e-5)
    np.testing.assert_allclose(m8["grad_norm"], m1["grad_norm"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def _losses(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return {r["step"]: r["train/loss"] for r in map(json.loads, f) if "train/loss" in r}


def _final_params(workdir, step, config):
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    import orbax.checkpoint as ocp

    state = ckpt.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    ckpt.close()
    return jax.tree.map(np.asarray, state)


def _two_stage_config(last_steps: int = 4, **train_overrides):
    """Two recipe stages reading different data blocks: every parameter for 2 steps on ``captions`` (EntityGrid-QA
    answers as captions: ``plain`` template, its own seed, global batch 8), then the LLM only (a new optimizer
    state) for ``last_steps`` on ``config.data`` (chatml, global batch 16 in 2 micro-batches)."""
    c = tiny_train_config(2 + last_steps, **train_overrides)
    c.datasets = dict(captions=dict(source=dict(c.data.source.to_dict(), seed=1), template="plain", batch_size=8,
                                    accum=1, seq_buckets=(128,)))
    c.data.update(batch_size=16, accum=2)
    c.train.recipe = [dict(name="all", steps=2, train=[".*"], lr=2e-3, warmup=0.0, data="captions"),
                      dict(name="llm", steps=last_steps, train=["llm/.*"], lr=1e-3, warmup=0.0, data="default")]
    return c


def _first_batch_tokens(config, workdir, stage_index):
    """Loss tokens of the first batch of a stage's data block, built here from the block (not by the trainer)."""
    from vlm_jax.data.processor import ImageProcessor
    from vlm_jax.model import VLMConfig
    from vlm_jax.run_config import RunConfig
    from vlm_jax.run_config.build_data import build_tokenizer, build_train_dataset

    run = RunConfig.from_config(config)
    processor = ImageProcessor(dict(run.data.tiling), VLMConfig.from_dict(config.model.to_dict()))
    tokenizer = build_tokenizer(run.data, os.path.join(workdir, "cache"))
    stream = run.stream(run.train.recipe[stage_index])
    batch = next(iter(build_train_dataset(stream, processor, tokenizer, seed=run.train.seed + stage_index, hosts=1)))
    assert batch["tokens"].shape[0] == stream.batch_size
    return float((batch["loss_mask"] & batch["valid"])[:, 1:].sum())


@pytest.mark.slow
def test_resume_is_bit_exact(tmp_path):
    """6 straight steps == 3 + resume + 3, across a stage change (step 2) to another data block and resuming inside
    the second stage: the checkpoint holds the running stage's data iterator."""
    straight, sliced = str(tmp_path / "straight"), str(tmp_path / "sliced")
    train(_two_stage_config(), straight)
    train(_two_stage_config(stop_at=3), sliced)
    assert max(_losses(sliced)) == 3
    train(_two_stage_config(), sliced)  # resumes at step 3
    assert _losses(sliced) == _losses(straight) and len(_losses(straight)) == 6
    a, b = _final_params(straight, 6, None), _final_params(sliced, 6, None)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    # each stage read its own block: the first batch of each, built from the block, has the logged loss tokens
    with open(os.path.join(straight, "metrics.jsonl")) as f:
        tokens = {r["step"]: r["train/tokens"] for r in map(json.loads, f) if "train/tokens" in r}
    config = _two_stage_config()
    assert tokens[1] == _first_batch_tokens(config, straight, 0)
    assert tokens[3] == _first_batch_tokens(config, straight, 1)
    # a different data block of the running stage is refused on resume ...
    changed = _two_stage_config(last_steps=7)
    changed.data.source.seed = 1
    with pytest.raises(CheckpointMismatch, match="data config"):
        train(changed, sliced)
    # so is a different model config, naming the key and both values
    changed = _two_stage_config(last_steps=7)
    changed.model.llm.mlp_dim = 96
    with pytest.raises(CheckpointMismatch, match=r"model\.llm\.mlp_dim: checkpoint 64, run 96"):
        train(changed, sliced)
    # ... while the block of a finished stage may change: the running stage's stream continues
    changed = _two_stage_config(last_steps=5)
    changed.datasets.captions.template = "chatml"
    train(changed, sliced)
    assert sorted(_losses(sliced)) == list(range(1, 8))


def test_every_stage_batch_must_split_over_the_hosts():
    """Checked for every stage before anything is built, naming the stage and its block."""
    from vlm_jax.run_config import RunConfig
    from vlm_jax.train.loop import check_batches

    run = RunConfig.from_config(_two_stage_config())
    check_batches(run, 8)
    with pytest.raises(ValueError, match=r"stage 'all' \(data 'captions'\): global batch size 8 is not divisible by "
                                         r"the 3 hosts"):
        check_batches(run, 3)


def test_nan_stops_with_last_good_checkpoint(tmp_path):
    cfg = tiny_train_config(6)
    cfg.train.ckpt_every = 1
    cfg.train.grad_clip = 0.0
    cfg.train.recipe[0]["lr"] = 1e30
    cfg.train.z_loss = 0.0
    with pytest.raises(NonFiniteLoss, match="last good checkpoint"):
        train(cfg, str(tmp_path))
    ckpt = Checkpointer(str(tmp_path / "checkpoints"))
    last = ckpt.latest_step()
    ckpt.close()
    losses = _losses(str(tmp_path))
    assert last is not None and all(np.isfinite(losses[s]) for s in range(1, last + 1))


def test_gradient_accumulation_matches_the_whole_batch(model_and_batch):
    cfg, params, batch = model_and_batch
    results = []
    for accum in (1, 2):
        built = build_stage_state(cfg, _stage([".*"]), _one_device(),
                                  optimizer=dict(weight_decay=0.0, grad_clip=1.0, eps=1.0), accum=accum)
        new, metrics = jax.jit(built.train_step)(built.create(params, 0), batch)
        results.append((jax.device_get(metrics), jax.tree.map(np.asarray, jax.device_get(new.params))))
    (m1, p1), (m2, p2) = results
    np.testing.assert_allclose(m2["loss"], m1["loss"], rtol=1e-5)
    np.testing.assert_allclose(m2["grad_norm"], m1["grad_norm"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_checkpoint_restores_onto_a_different_mesh(model_and_batch, tmp_path):
    import grain

    from vlm_jax.state.checkpoint import make_meta

    cfg, params, _ = model_and_batch
    stage = _stage([".*"])
    state = build_stage_state(cfg, stage, _one_device()).create(params, 5)
    data = iter(grain.MapDataset.range(10).to_iter_dataset())
    next(data)
    ckpt = Checkpointer(str(tmp_path))
    ckpt.save(5, state, data, make_meta({}, {"source": "x"}, stage.name))
    ckpt.wait()

    target = build_stage_state(cfg, stage, sharding.make_mesh(data=2, fsdp=2, tensor=2))
    target_sh = target.shardings
    fresh = iter(grain.MapDataset.range(10).to_iter_dataset())
    restored = ckpt.restore(5, target.abstract, fresh, data_config={"source": "x"})
    ckpt.close()
    assert int(restored.step) == 5 and next(fresh) == 1  # the data stream continues after the saved element
    for a, b, s in zip(jax.tree.leaves(state), jax.tree.leaves(restored), jax.tree.leaves(target_sh)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert b.sharding == s
    assert any("fsdp" in str(s.spec) for s in jax.tree.leaves(target_sh))
