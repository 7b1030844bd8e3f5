"""Checkpoints hold one parameter tree for every recipe stage; restoring parameters needs no recipe; a checkpoint
that does not fit the model (tree, shapes, dtypes, model config) is refused with a message naming the paths."""

import subprocess
import sys

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vlm_jax import presets, sharding
from vlm_jax.model import VLM, VLMConfig
from vlm_jax.state.checkpoint import Checkpointer, CheckpointMismatch, make_meta
from vlm_jax.state.params import abstract_params, init_params
from vlm_jax.state.restore import restore_params
from vlm_jax.train.recipe import parse_recipe
from vlm_jax.train.stage_state import build_stage_state

MODEL = dict(vision=presets.tiny_vision("internvit"), llm=presets.tiny_llm(), projector=dict(kind="internvl"),
             select_layer=-1, layout="flat", max_views=4, image_token_id=100)
RECIPE = parse_recipe([dict(name="align", steps=2, train=["projector/.*"], lr=1e-2, warmup=0.0),
                       dict(name="sft", steps=2, train=["projector/.*", "llm/.*"], lr=1e-3, warmup=0.0)])


def _one_device():
    return sharding.make_mesh(data=1, devices=jax.devices()[:1])


def _flax_leaves(model_dict):
    """``{path: (shape, dtype)}`` of the model's parameters, straight from flax (no vlm_jax state code)."""
    model = nnx.eval_shape(lambda: VLM(VLMConfig.from_dict(model_dict), rngs=nnx.Rngs(0)))
    return {"/".join(map(str, p)): (tuple(v.shape), np.dtype(v.dtype).name)
            for p, v in nnx.to_flat_state(nnx.state(model))}


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A workdir with one checkpoint (step 2) written by the "align" stage; its meta holds the model config
    only (no ``train`` block, hence no recipe)."""
    workdir = tmp_path_factory.mktemp("run")
    cfg = VLMConfig.from_dict(MODEL)
    state = build_stage_state(cfg, RECIPE[0], _one_device()).create(init_params(cfg, _one_device(), seed=3), 2)
    ckpt = Checkpointer(str(workdir / "checkpoints"), async_save=False)
    ckpt.save(2, state, iter(grain.MapDataset.range(4).to_iter_dataset()), make_meta({"model": MODEL}, {}, "align"))
    ckpt.close()
    return str(workdir), jax.tree.map(np.asarray, state.params)


def test_every_stage_has_the_same_parameter_tree_and_its_own_optimizer_state():
    cfg = VLMConfig.from_dict(MODEL)
    built = [build_stage_state(cfg, stage, _one_device()) for stage in RECIPE]
    trees = [jax.tree.structure(b.abstract.params) for b in built]
    assert trees[0] == trees[1]
    assert [jax.tree.leaves(b.abstract.params) for b in built][0] == jax.tree.leaves(built[1].abstract.params)
    moments = [sum(x.size for x in jax.tree.leaves(b.abstract.opt_state)) for b in built]
    trainable = [sum(x.size for x in jax.tree.leaves(b.split(b.abstract.params)[0])) for b in built]
    assert trainable[0] < trainable[1] and moments[0] < moments[1]  # align trains the projector only


def test_restore_params_needs_no_recipe(saved_run):
    workdir, saved = saved_run
    cfg, graphdef, params = restore_params(workdir)  # meta has no train block: nothing about stages is read
    assert cfg == VLMConfig.from_dict(MODEL)
    for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))
    assert any("fsdp" in str(x.sharding.spec) for x in jax.tree.leaves(params))  # default mesh: fsdp over 8
    nnx.merge(graphdef, params)  # the model as trained


def _first_difference(model_a, model_b):
    a, b = _flax_leaves(model_a), _flax_leaves(model_b)
    return [(p, a.get(p), b.get(p)) for p in sorted(set(a) | set(b)) if a.get(p) != b.get(p)]


def test_parameters_of_another_model_are_refused_naming_paths_and_shapes(saved_run):
    workdir, _ = saved_run
    other = dict(MODEL, llm=presets.tiny_llm(hidden=48))
    differences = _first_difference(MODEL, other)
    path, (saved_shape, _), (model_shape, _) = differences[0]
    ckpt = Checkpointer(f"{workdir}/checkpoints", async_save=False)
    with pytest.raises(CheckpointMismatch) as err:
        ckpt.restore_params(2, abstract_params(VLMConfig.from_dict(other), _one_device())[1])
    ckpt.close()
    message = str(err.value)
    assert f"params/{path}/value: checkpoint {saved_shape} float32, model {model_shape} float32" in message
    assert f"({len(differences)} differing paths)" in message


def test_missing_and_extra_paths_are_named(saved_run):
    workdir, _ = saved_run
    other = dict(MODEL, projector=dict(kind="mlp2x_gelu"))
    saved, model = _flax_leaves(MODEL), _flax_leaves(other)
    missing, extra = sorted(set(model) - set(saved)), sorted(set(saved) - set(model))
    assert missing or extra
    ckpt = Checkpointer(f"{workdir}/checkpoints", async_save=False)
    with pytest.raises(CheckpointMismatch) as err:
        ckpt.restore_params(2, abstract_params(VLMConfig.from_dict(other), _one_device())[1])
    ckpt.close()
    message = str(err.value)
    for path in missing[:1]:
        assert f"params/{path}/value: missing in the checkpoint (model: {model[path][0]} float32)" in message
    for path in extra[:1]:
        assert f"params/{path}/value: not in the model (checkpoint: {saved[path][0]} float32)" in message


def test_a_different_dtype_is_named(saved_run):
    workdir, _ = saved_run
    _, abstract = abstract_params(VLMConfig.from_dict(MODEL), _one_device())
    scale = abstract["llm"]["final_norm"]["scale"]
    abstract["llm"]["final_norm"]["scale"] = scale.replace(
        jax.ShapeDtypeStruct(scale.shape, jnp.bfloat16, sharding=scale.get_value().sharding))
    ckpt = Checkpointer(f"{workdir}/checkpoints", async_save=False)
    with pytest.raises(CheckpointMismatch, match=r"params/llm/final_norm/scale/value: checkpoint \(32,\) float32, "
                                                 r"model \(32,\) bfloat16"):
        ckpt.restore_params(2, abstract)
    ckpt.close()


def test_resume_with_another_model_config_or_stage_is_refused(saved_run):
    workdir, _ = saved_run
    cfg = VLMConfig.from_dict(MODEL)
    ckpt = Checkpointer(f"{workdir}/checkpoints", async_save=False)
    align = build_stage_state(cfg, RECIPE[0], _one_device()).abstract
    data = iter(grain.MapDataset.range(4).to_iter_dataset())
    changed = dict(MODEL, llm=dict(MODEL["llm"], rope_theta=500.0))
    with pytest.raises(CheckpointMismatch, match=r"model\.llm\.rope_theta: checkpoint \(absent\), run 500\.0"):
        ckpt.restore(2, align, data, data_config={}, model_config=changed)
    # the "sft" stage's optimizer state covers the LLM too: that is not the state the "align" stage saved
    sft = build_stage_state(cfg, RECIPE[1], _one_device()).abstract
    with pytest.raises(CheckpointMismatch, match=r"opt_state/\S+/mu/llm/\S+: missing in the checkpoint"):
        ckpt.restore(2, sft, data, data_config={}, model_config=MODEL)
    restored = ckpt.restore(2, align, data, data_config={}, model_config=MODEL)
    ckpt.close()
    assert int(restored.step) == 2


def test_evaluate_does_not_import_train():
    code = "import vlm_jax.evaluate.harness, sys; assert not any(m.startswith('vlm_jax.train') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
