"""SliME global soft mixture of MLP and resampler → MLP (spec/methods.md §6.3)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.slime_helpers import TINY, randomize_params
from vlm_jax.hires.slime import GatedGlobalAdapter

HW = (4, 4)


def make(**changes) -> GatedGlobalAdapter:
    return GatedGlobalAdapter(dataclasses.replace(TINY, **changes), 32, 32, rngs=nnx.Rngs(0))


def tokens(seed: int = 0) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).normal(size=(2, 16, 32)), jnp.float32)


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_gate_starts_at_half_half_and_mixes_both_experts():
    module, x = make(), tokens()
    np.testing.assert_allclose(np.asarray(module.gates(x, train=False)), 0.5, atol=1e-6)
    mlp, resampled = module.mlp(x), module.mlp(module.resampler(x, HW))
    np.testing.assert_allclose(np.asarray(module(x, HW)), np.asarray(0.5 * mlp + 0.5 * resampled),
                               rtol=1e-5, atol=1e-6)


def test_eval_gate_is_deterministic_per_token_softmax():
    module, x = make(), tokens()
    randomize_params(module, seed=3)
    x_np = np.asarray(x, np.float64)
    expected = softmax(x_np @ np.asarray(module.w_gate[...], np.float64))
    expected = expected / (expected.sum(-1, keepdims=True) + 1e-6)
    got = module.gates(x, train=False, rng=jax.random.key(1))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(module(x, HW, rng=jax.random.key(1))),
                                  np.asarray(module(x, HW, rng=jax.random.key(2))))
    # per token: output token t uses the gate of input token t
    g = np.asarray(got)[..., None]
    mix = g[..., 0, :] * np.asarray(module.mlp(x)) + g[..., 1, :] * np.asarray(module.mlp(module.resampler(x, HW)))
    np.testing.assert_allclose(np.asarray(module(x, HW)), mix, rtol=1e-5, atol=1e-6)


def test_train_noise_only_from_explicit_rng_code_form():
    module, x = make(), tokens()
    with pytest.raises(ValueError, match="rng"):
        module.gates(x, train=True)
    a = np.asarray(module.gates(x, train=True, rng=jax.random.key(0)))
    np.testing.assert_array_equal(a, np.asarray(module.gates(x, train=True, rng=jax.random.key(0))))
    assert not np.allclose(a, np.asarray(module.gates(x, train=True, rng=jax.random.key(1))))
    # W_g = 0: logits are eps · (softplus(0) + 0.01); W_noise is dead in the code form.
    eps = np.asarray(jax.random.normal(jax.random.key(0), (2, 16, 2)), np.float64)
    expected = softmax(eps * (np.log(2.0) + 0.01))
    np.testing.assert_allclose(a, expected / (expected.sum(-1, keepdims=True) + 1e-6), rtol=1e-5)
    module.w_noise[...] = jnp.ones_like(module.w_noise[...])
    np.testing.assert_array_equal(a, np.asarray(module.gates(x, train=True, rng=jax.random.key(0))))


def test_paper_form_uses_w_noise():
    module, x = make(gate="paper"), tokens()
    eps = np.asarray(jax.random.normal(jax.random.key(4), (2, 16, 2)), np.float64)
    np.testing.assert_allclose(np.asarray(module.gates(x, train=True, rng=jax.random.key(4))),
                               softmax(eps * np.log(2.0)), rtol=1e-5)
    w_noise = np.random.default_rng(5).normal(size=(32, 2))
    module.w_noise[...] = jnp.asarray(w_noise, jnp.float32)
    std = np.log1p(np.exp(np.asarray(x, np.float64) @ w_noise))
    np.testing.assert_allclose(np.asarray(module.gates(x, train=True, rng=jax.random.key(4))),
                               softmax(eps * std), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(module.gates(x, train=False)), 0.5, atol=1e-7)


def test_expert_switches_bypass_the_gate():
    x = tokens(1)
    mlp_only, res_only = make(expert=0), make(expert=1)
    np.testing.assert_array_equal(np.asarray(mlp_only(x, HW, train=True)), np.asarray(mlp_only.mlp(x)))
    np.testing.assert_array_equal(np.asarray(res_only(x, HW, train=True)),
                                  np.asarray(res_only.mlp(res_only.resampler(x, HW))))
    assert not np.allclose(np.asarray(mlp_only(x, HW)), np.asarray(res_only(x, HW)))


def test_gate_needs_one_query_per_token():
    module = make(global_grid=2)
    with pytest.raises(ValueError, match="global_grid"):
        module(tokens(), HW)
    assert module.cfg.expert == -1
    assert make(global_grid=2, expert=1)(tokens(), HW).shape == (2, 4, 32)
