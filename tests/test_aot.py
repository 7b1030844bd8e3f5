"""AOT compile of the real train step for TPU topologies from this CPU host (vlm_jax.aot).

The compile-only TPU devices come from libtpu (``jax.experimental.topologies``); nothing is allocated.
The real-size test compiles InternVL2-2B (2.2B parameters, bf16 compute, full remat, scanned layers)
for a v5p 2x2x2 slice: about 95 CPU-seconds of XLA/Mosaic compile on this machine.
"""

import importlib.util
import math
import os
import re
import subprocess
import sys

import jax
import pytest
from jax.sharding import NamedSharding

from vlm_jax import aot, sharding
from vlm_jax.model import VLMConfig
from vlm_jax.nn.attention import default_implementation
from vlm_jax.train.recipe import pick_stage
from vlm_jax.train.stage_state import build_stage_state_from_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(name: str, arg: str | None = None):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def _topology_mesh(topology: str, **sizes):
    return sharding.make_mesh(**sizes, devices=aot.topology_devices(topology))


def test_parse_mesh():
    assert aot.parse_mesh("data=1,fsdp=8,tensor=1") == {"data": 1, "fsdp": 8, "tensor": 1}
    assert aot.parse_mesh("") == {}
    for bad in ("fsdp:8", "pipeline=2", "data=x"):
        with pytest.raises(ValueError, match="bad mesh item"):
            aot.parse_mesh(bad)


def test_hbm_per_device_follows_generation_and_cores_per_chip():
    def hbm(name):
        return aot.hbm_bytes_per_device(aot.topology_devices(name)) / aot.GIB

    assert hbm("v5p:2x2x1") == 95 and hbm("v5e:2x2") == 16 and hbm("v6e:2x2") == 32
    assert hbm("v4:2x2x1") == 16  # libtpu exposes v4's two TensorCores as two devices of a 32 GiB chip


def test_auto_attention_follows_the_ambient_mesh_platform():
    assert default_implementation() == "xla"  # CPU host
    with jax.set_mesh(_topology_mesh("v5p:2x2x1", data=4)):
        assert default_implementation() == "splash"
    with jax.set_mesh(sharding.make_mesh(data=8)):
        assert default_implementation() == "xla"


def test_optimizer_state_is_sharded_like_the_parameters():
    config = _config("tiny_entitygrid")
    mesh = _topology_mesh("v5p:2x2x1", data=1, fsdp=4)
    built = build_stage_state_from_config(VLMConfig.from_dict(config.model.to_dict()), pick_stage(config.train, None),
                                          mesh, config.train, accum=1)
    state = built.abstract
    trainable, _ = built.split(state.params)
    params = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_flatten_with_path(trainable)[0]}
    matched = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(state.opt_state)[0]:
        key = jax.tree_util.keystr(path)
        assert isinstance(leaf.sharding, NamedSharding) and leaf.sharding.mesh is mesh
        if ".mu" in key or ".nu" in key:
            param = params[key[key.index("[", key.index(".mu" if ".mu" in key else ".nu")):]]
            assert leaf.shape == param.shape and leaf.sharding == param.sharding, key
            matched += 1
    assert matched == 2 * len(params)
    embedding = state.opt_state[1].inner_states["base"].inner_state[0].mu["llm"]["embedder"]["embedding"]
    assert "fsdp" in embedding.get_value().sharding.spec  # really sharded, not replicated


def test_batch_not_divisible_by_the_batch_axes_raises():
    with pytest.raises(ValueError, match="batch_size=6 is not divisible"):
        aot.compile_train_step(_config("tiny_entitygrid"), "v5p:2x2x1", {"data": 1, "fsdp": 4}, batch_size=6)
    with pytest.raises(ValueError, match="needs 3 devices, have 4"):
        aot.compile_train_step(_config("tiny_entitygrid"), "v5p:2x2x1", {"data": 1, "fsdp": 3})


@pytest.mark.slow
def test_tiny_preset_compiles_for_v5p_with_the_splash_kernel():
    config = _config("tiny_entitygrid")
    report = aot.compile_train_step(config, "v5p:2x2x1", {"data": 1, "fsdp": 4})
    assert report.error is None and report.fits and report.has_splash
    assert report.num_devices == 4 and report.mesh["fsdp"] == 4 and report.device_kind == "TPU v5"
    # defaults: the stage data block's global batch and longest sequence bucket
    assert (report.batch_size, report.seq_len) == (config.data.batch_size, max(config.data.seq_buckets))
    for name in ("argument_bytes", "output_bytes", "temp_bytes", "code_bytes", "flops", "bytes_accessed"):
        assert getattr(report, name) > 0, name
    assert report.alias_bytes > 0  # the donated train state is reused for the new one
    assert re.search(r"^splash attention kernel +yes$", report.table(), re.M)


def test_too_large_batch_is_reported_as_not_fitting():
    report = aot.compile_train_step(_config("tiny_entitygrid"), "v5e:2x2", {"data": 4}, batch_size=4096, seq_len=192)
    assert not report.fits and "memory" in report.error.lower()
    assert re.search(r"^fits +NO: the compiler ran out of memory$", report.table(), re.M)


@pytest.mark.slow
def test_internvl2_2b_fits_on_v5p_2x2x2_with_fsdp():
    """InternVL2-2B fine-tuning (ViT frozen), global batch 8 x 4096 tokens, fsdp=8 over 8 v5p chips.

    Train state = float32 parameters (P) + Adam mu and nu of the trainable ones (T), so
    ``4 (P + 2 T)`` bytes (plus two int32 step counters); fully sharded over 8 devices that is 1/8 of it
    per device, and the per-device argument bytes (state + the batch shard, ~0.03 GiB of pixels, + a few
    replicated norms) must be within 3% of that.
    """
    report = aot.compile_train_step(_config("internvl2_2b"), "v5p:2x2x2", {"data": 1, "fsdp": 8, "tensor": 1},
                                    batch_size=8, seq_len=4096)
    print("\n" + report.table())
    assert report.error is None and report.fits and report.has_splash
    assert 2.1e9 < report.num_params < 2.3e9 and report.num_trainable < report.num_params  # ViT frozen
    state = 4 * (report.num_params + 2 * report.num_trainable)
    assert math.isclose(report.state_bytes_global, state, abs_tol=64)
    assert math.isclose(report.argument_bytes, state / 8, rel_tol=0.03)
    assert report.total_bytes < report.hbm_bytes == 95 * aot.GIB


def test_cli_compile_prints_the_table_and_fails_when_it_does_not_fit():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-m", "vlm_jax.cli", "compile", f"--config={ROOT}/configs/tiny_entitygrid.py",
         "--topology=v5e:2x2", "--mesh=data=4,fsdp=1", "--batch_size=4096", "--seq_len=192"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    assert re.search(r"^mesh +data=4, fsdp=1, tensor=1, sequence=1$", result.stdout, re.M)
    assert re.search(r"^batch x seq_len +4096 x 192$", result.stdout, re.M)
    assert re.search(r"^HBM / device +16\.000 GiB$", result.stdout, re.M)
    assert re.search(r"^fits +NO", result.stdout, re.M)
