"""The decoder on an 8-device mesh (fsdp 2 x tensor 4): parameter PartitionSpecs, and forward / cached
decode equal to the single-device computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from vlm_jax.lm.config import LMConfig
from vlm_jax.lm.decoder import Decoder
from vlm_jax.lm.kv_cache import cache_shardings, init_cache, next_positions, prompt_positions
from vlm_jax.nn.attention import causal_mask
from vlm_jax.sharding import make_mesh, state_shardings, use_mesh

CFG = LMConfig(vocab_size=128, hidden_size=32, num_layers=2, num_heads=8, num_kv_heads=4, head_dim=4, mlp_dim=64,
               qkv_bias=True)
CFG_KV1 = CFG.replace(num_kv_heads=2)  # 2 kv heads do not divide tensor=4: replicated, not an error

EXPECTED = {
    "embedder.embedding": P("tensor", "fsdp"),                       # [V, D]
    "layers.layers.attn.q_kernel": P(None, "fsdp", "tensor", None),  # [layers, D, H, Dh]
    "layers.layers.attn.k_kernel": P(None, "fsdp", "tensor", None),  # [layers, D, K, Dh]
    "layers.layers.attn.q_bias": P(None, "tensor", None),            # [layers, H, Dh]
    "layers.layers.attn.o_kernel": P(None, "tensor", None, "fsdp"),  # [layers, H, Dh, D]
    "layers.layers.mlp.gate.kernel": P(None, "fsdp", "tensor"),      # [layers, D, F]
    "layers.layers.mlp.down.kernel": P(None, "tensor", "fsdp"),      # [layers, F, D]
    "layers.layers.attn_norm.scale": P(None, None),                  # [layers, D]
    "final_norm.scale": P(None),
    "lm_head.kernel": P("fsdp", "tensor"),                           # [D, V]
}


@pytest.fixture(scope="module")
def mesh():
    return make_mesh(data=1, fsdp=2, tensor=4)


def sharded_decoder(cfg, mesh):
    """Create the parameters abstractly, then materialise them sharded under ``jit(out_shardings)``."""
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))))
    shardings = state_shardings(abstract, mesh)
    state = jax.jit(lambda: nnx.split(Decoder(cfg, rngs=nnx.Rngs(0)))[1], out_shardings=shardings)()
    return graphdef, state


def spec_of(state, path):
    node = state
    for part in path.split("."):
        node = node[part]
    return node[...].sharding.spec


def test_parameter_partition_specs(mesh):
    _, state = sharded_decoder(CFG, mesh)
    for path, spec in EXPECTED.items():
        assert spec_of(state, path) == spec, path
    _, state_kv1 = sharded_decoder(CFG_KV1, mesh)
    assert spec_of(state_kv1, "layers.layers.attn.k_kernel") == P(None, "fsdp", None, None)


def forward(graphdef, state, tokens, valid):
    m = nnx.merge(graphdef, state)
    hidden, _ = m(m.embed(tokens), positions=prompt_positions(valid), mask=causal_mask(valid))
    return m.logits(hidden)


def decode(graphdef, state, tokens, valid, next_token):
    """Prefill a left-padded prompt, then one extend step; logits of the extend step ``[B, 1, V]``."""
    m = nnx.merge(graphdef, state)
    cache = init_cache(m.cfg, tokens.shape[0], capacity=16)
    _, cache = m(m.embed(tokens), positions=prompt_positions(valid),
                 mask=cache.extend_mask(valid.astype(jnp.int32), valid),
                 cache=cache)
    ones = jnp.ones(next_token.shape, jnp.int32)
    hidden, cache = m(m.embed(next_token), positions=next_positions(cache)[:, None],
                      mask=cache.extend_mask(ones, ones.astype(bool)), cache=cache)
    return m.logits(hidden), cache


@pytest.mark.parametrize("cfg", [CFG, CFG_KV1], ids=["kv4", "kv2"])
def test_sharded_forward_and_decode_match_single_device(cfg, mesh):
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(0, 128, (4, 8)), jnp.int32)
    valid = jnp.asarray(np.arange(8)[None] >= np.array([[0], [3], [5], [1]]))  # left padding
    next_token = jnp.asarray(rng.integers(0, 128, (4, 1)), jnp.int32)

    graphdef, state = nnx.split(nnx.jit(lambda: Decoder(cfg, rngs=nnx.Rngs(0)))())
    ref_logits = jax.jit(forward, static_argnums=0)(graphdef, state, tokens, valid)
    ref_step, _ = jax.jit(decode, static_argnums=0)(graphdef, state, tokens, valid, next_token)

    graphdef, sharded = sharded_decoder(cfg, mesh)
    batch = NamedSharding(mesh, P("fsdp"))
    with use_mesh(mesh):
        logits = jax.jit(forward, static_argnums=0)(graphdef, sharded, jax.device_put(tokens, batch),
                                                    jax.device_put(valid, batch))
        step_logits, cache = jax.jit(decode, static_argnums=0)(
            graphdef, sharded, jax.device_put(tokens, batch), jax.device_put(valid, batch),
            jax.device_put(next_token, batch))
    assert logits.sharding.spec[0] == "fsdp"
    assert cache.k.sharding.is_equivalent_to(cache_shardings(cache, mesh).k, cache.k.ndim)
    for ours, ref in ((logits, ref_logits), (step_logits, ref_step)):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), rtol=1e-5, atol=1e-5 * np.abs(ref).max())
