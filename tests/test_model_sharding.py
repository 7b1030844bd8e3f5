"""The VLM forward on an 8-device CPU mesh equals the single-device forward; parameters are sharded
as the logical-axis rules say."""

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P
from tiny_models import random_batch, tiny_internvl, tiny_llava_next

from vlm_jax import sharding
from vlm_jax.model import VLM

MESHES = {"data8": dict(data=8), "fsdp8": dict(data=1, fsdp=8), "2x2x2": dict(data=2, fsdp=2, tensor=2)}


def _forward(cfg, batch, mesh):
    graphdef, state, shardings = sharding.init_sharded(lambda: VLM(cfg, rngs=nnx.Rngs(0)), mesh)
    with sharding.use_mesh(mesh):
        logits = jax.jit(lambda s, b: nnx.merge(graphdef, s)(b))(state, batch)
    return np.asarray(logits), state, shardings


@pytest.fixture(scope="module", params=["llava_next", "internvl"])
def reference(request):
    cfg = tiny_llava_next() if request.param == "llava_next" else tiny_internvl()
    batch = random_batch(cfg, batch_size=8, seq_len=112)
    one = sharding.make_mesh(data=1, devices=jax.devices()[:1])
    logits, _, _ = _forward(cfg, batch, one)
    return cfg, batch, logits


@pytest.mark.parametrize("mesh_name", sorted(MESHES))
def test_sharded_forward_equals_single_device(reference, mesh_name):
    cfg, batch, expected = reference
    mesh = sharding.make_mesh(**MESHES[mesh_name])
    logits, state, shardings = _forward(cfg, batch, mesh)
    valid = batch["valid"]
    np.testing.assert_allclose(logits[valid], expected[valid], rtol=1e-5, atol=1e-5)
    # parameters really are distributed as the rules say
    emb = state["llm"]["embedder"]["embedding"][...]
    mlp_kernels = [v[...] for p, v in nnx.to_flat_state(state) if p[-1] == "kernel" and "mlp" in p]
    if mesh_name == "fsdp8":
        assert emb.sharding.spec == P(None, "fsdp")  # [vocab, embed]: embed -> fsdp
        assert any("fsdp" in str(k.sharding.spec) for k in mlp_kernels)
    if mesh_name == "2x2x2":
        assert emb.sharding.spec == P("tensor", "fsdp")
    if mesh_name == "data8":  # pure data parallel: everything replicated, batch split
        assert sharding.replicated_fraction(state, shardings) > 0.99


def test_replication_guard_raises():
    cfg = tiny_llava_next()
    mesh = sharding.make_mesh(data=8)
    graphdef, state, shardings = sharding.init_sharded(lambda: VLM(cfg, rngs=nnx.Rngs(0)), mesh)
    with pytest.raises(ValueError, match="replicated"):
        sharding.check_sharded(state, shardings, mesh, max_replicated=0.5)


def test_mesh_sizes_validated():
    with pytest.raises(ValueError, match="at most one"):
        sharding.make_mesh(data=-1, fsdp=-1)
    with pytest.raises(ValueError, match="needs 6 devices"):
        sharding.make_mesh(data=2, fsdp=3)
    with pytest.raises(KeyError, match="no rule"):
        sharding.logical_to_spec(("embd",))
