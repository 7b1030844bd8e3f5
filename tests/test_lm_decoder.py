"""Decoder options beyond HF parity: remat gives the same gradients, bfloat16 compute, input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vlm_jax.lm.config import LMConfig
from vlm_jax.lm.decoder import Decoder
from vlm_jax.nn.attention import causal_mask
from vlm_jax.nn.precision import Dtypes

CFG = LMConfig(vocab_size=128, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8, mlp_dim=64)
TOKENS = jnp.asarray(np.random.default_rng(0).integers(0, 128, (2, 6)), jnp.int32)
VALID = jnp.ones((2, 6), bool)
POSITIONS = jnp.broadcast_to(jnp.arange(6), (2, 6))


def loss_and_grads(cfg):
    graphdef, state = nnx.split(nnx.jit(lambda: Decoder(cfg, rngs=nnx.Rngs(0)))())

    def loss(state):
        m = nnx.merge(graphdef, state)
        hidden, _ = m(m.embed(TOKENS), positions=POSITIONS, mask=causal_mask(VALID))
        logp = jax.nn.log_softmax(m.logits(hidden))
        return -jnp.take_along_axis(logp[:, :-1], TOKENS[:, 1:, None], axis=-1).mean()

    return jax.jit(jax.value_and_grad(loss))(state)


def test_remat_keeps_loss_and_gradients():
    (loss, grads), (loss_remat, grads_remat) = loss_and_grads(CFG), loss_and_grads(CFG.replace(remat="full"))
    np.testing.assert_allclose(loss_remat, loss, rtol=1e-6)
    for g, g_remat in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_remat)):
        np.testing.assert_allclose(g_remat, g, rtol=1e-5, atol=1e-7)
    assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))


def test_bfloat16_compute_with_float32_params_and_logits():
    decoder = nnx.jit(lambda: Decoder(CFG, dtypes=Dtypes(params="float32", compute="bfloat16"), rngs=nnx.Rngs(0)))()
    ref = nnx.jit(lambda: Decoder(CFG, rngs=nnx.Rngs(0)))()
    x = decoder.embed(TOKENS)
    hidden, _ = decoder(x, positions=POSITIONS, mask=causal_mask(VALID))
    ref_hidden, _ = ref(ref.embed(TOKENS), positions=POSITIONS, mask=causal_mask(VALID))
    assert x.dtype == hidden.dtype == jnp.bfloat16 and decoder.final_norm.scale[...].dtype == jnp.float32
    assert decoder.logits(hidden).dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(hidden, np.float32), ref_hidden, atol=0.1 * float(jnp.abs(ref_hidden).max()))


def test_bad_inputs_raise():
    decoder = nnx.jit(lambda: Decoder(CFG, rngs=nnx.Rngs(0)))()
    x = decoder.embed(TOKENS)
    with pytest.raises(ValueError, match=r"tokens must be \[B, L\]"):
        decoder.embed(TOKENS[0])
    with pytest.raises(ValueError, match="x must be"):
        decoder(x[..., :16], positions=POSITIONS, mask=causal_mask(VALID))
    with pytest.raises(ValueError, match="positions"):
        decoder(x, positions=POSITIONS[:, :3], mask=causal_mask(VALID))
    with pytest.raises(ValueError, match="mask queries"):
        decoder(x, positions=POSITIONS, mask=causal_mask(VALID[:, :3]))
