"""HiRes-LLaVA Self-Mining Sampler (spec/methods.md §4.2): shapes, window locality, and agreement with a
per-window numpy loop written here from the module's parameters (float64, 1e-5)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vlm_jax.hires.self_mining import SelfMiningConfig, SelfMiningSampler

D = 8
_erf = np.vectorize(math.erf)


def _sampler(seed=0, **overrides):
    cfg = SelfMiningConfig(**{**dict(heads=2, mlp_ratio=2), **overrides})
    return SelfMiningSampler(cfg, D, rngs=nnx.Rngs(seed))


def _params(module):
    flat = nnx.to_flat_state(nnx.state(module, nnx.Param))
    return {"/".join(map(str, path)): np.asarray(var[...], np.float64) for path, var in flat}


def _ln(x, p, name, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * p[f"{name}/scale"] + p[f"{name}/bias"]


def _reference(sms, x, ratio, window):
    """Loop over views and queries: pooled query, k×k neighbourhood clipped to the slice, pre-LN
    cross-attention and MLP per layer."""
    m, h, w, _ = x.shape
    pad = (window - ratio) // 2
    out = np.zeros((m, h // ratio, w // ratio, D))
    layers = [_params(layer) for layer in sms.layers]
    for v in range(m):
        for i in range(h // ratio):
            for j in range(w // ratio):
                q = x[v, i * ratio:(i + 1) * ratio, j * ratio:(j + 1) * ratio].mean((0, 1))
                rows = [y for y in range(i * ratio - pad, i * ratio - pad + window) if 0 <= y < h]
                cols = [c for c in range(j * ratio - pad, j * ratio - pad + window) if 0 <= c < w]
                win = x[v][np.ix_(rows, cols)].reshape(-1, D)
                for p in layers:
                    qn, kv = _ln(q, p, "q_norm"), _ln(win, p, "kv_norm")
                    qh = np.einsum("d,dhk->hk", qn, p["attn/q/kernel"]) + p["attn/q/bias"]
                    kh = np.einsum("sd,dhk->shk", kv, p["attn/k/kernel"]) + p["attn/k/bias"]
                    vh = np.einsum("sd,dhk->shk", kv, p["attn/v/kernel"]) + p["attn/v/bias"]
                    logits = np.einsum("hk,shk->hs", qh, kh) / math.sqrt(qh.shape[-1])
                    prob = np.exp(logits - logits.max(-1, keepdims=True))
                    prob /= prob.sum(-1, keepdims=True)
                    att = np.einsum("hs,shk->hk", prob, vh)
                    q = q + np.einsum("hk,hkd->d", att, p["attn/out/kernel"]) + p["attn/out/bias"]
                    hid = _ln(q, p, "mlp_norm") @ p["mlp/fc1/kernel"] + p["mlp/fc1/bias"]
                    hid = 0.5 * hid * (1 + _erf(hid / math.sqrt(2)))
                    q = q + hid @ p["mlp/fc2/kernel"] + p["mlp/fc2/bias"]
                out[v, i, j] = q
    return out


@pytest.mark.parametrize("ratio,window,hw,depth", [(2, None, (4, 6), 2), (2, 4, (6, 4), 2), (3, 5, (6, 9), 1)])
def test_matches_per_window_numpy_loop(ratio, window, hw, depth):
    sms = _sampler(ratio=ratio, window=window, depth=depth)
    h, w = hw
    x = np.random.default_rng(ratio + h).normal(size=(2, 1, h * w, D)).astype(np.float32)
    out = np.asarray(jax.jit(lambda a: sms(a, hw))(jnp.asarray(x)))
    assert out.shape == (2, 1, sms.tokens_per_slice(h, w), D) == (2, 1, (h // ratio) * (w // ratio), D)
    ref = _reference(sms, x.reshape(2, h, w, D).astype(np.float64), ratio, window or ratio)
    np.testing.assert_allclose(out.reshape(ref.shape), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("window", [None, 4])
def test_query_depends_only_on_its_window(window):
    h, w, ratio = 6, 8, 2
    sms = _sampler(ratio=ratio, window=window, depth=2)
    run = jax.jit(lambda a: sms(a, (h, w)))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 2, h, w, D)).astype(np.float32)
    qi, qj = 1, 2  # own block: rows 2..3, cols 4..5; 4x4 neighbourhood: rows 1..4, cols 3..6
    lo = 1 if window else 0
    rows, cols = slice(qi * ratio - lo, (qi + 1) * ratio + lo), slice(qj * ratio - lo, (qj + 1) * ratio + lo)

    def query(a):
        return np.asarray(run(jnp.asarray(a.reshape(1, 2, h * w, D))))[0, 0].reshape(h // ratio, w // ratio, D)[qi, qj]

    base = query(x)
    outside = x + 50 * rng.normal(size=x.shape).astype(np.float32)
    outside[0, 0, rows, cols] = x[0, 0, rows, cols]  # everything but the window, and the whole other view
    np.testing.assert_array_equal(query(outside), base)
    inside_block = x.copy()
    kick = 3 * rng.normal(size=D).astype(np.float32)  # not a constant shift, which LayerNorm would remove
    inside_block[0, 0, qi * ratio + 1, qj * ratio] += kick
    assert np.abs(query(inside_block) - base).max() > 1e-3
    ring = x.copy()
    ring[0, 0, qi * ratio - 1, qj * ratio - 1] += kick  # diagonal neighbour of the block
    changed = np.abs(query(ring) - base).max()
    assert changed > 1e-3 if window else changed == 0


def test_shapes_and_errors():
    sms = _sampler(ratio=2)
    assert sms.tokens_per_slice(24, 24) == 144 and sms.tokens_per_slice(4, 6) == 6
    assert sms(jnp.zeros((2, 3, 24, D)), (4, 6)).shape == (2, 3, 6, D)
    with pytest.raises(ValueError, match="do not form"):
        sms(jnp.zeros((1, 1, 20, D)), (4, 6))
    with pytest.raises(ValueError, match="divisible"):
        sms.tokens_per_slice(5, 6)
    with pytest.raises(ValueError, match="windw"):
        SelfMiningConfig.from_dict(dict(windw=4))
    for bad in (dict(window=3), dict(window=1), dict(ratio=0), dict(depth=0)):
        with pytest.raises(ValueError):
            SelfMiningConfig(**bad)
