"""The shared attention module (vlm_jax.nn.multi_head) and the probabilities of the entry point against a float64
numpy softmax attention written here: self- and cross-attention, key masks, causal masks, grouped-query heads,
qk-norm and RoPE, both parameter layouts."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vlm_jax.nn.attention import ar_mask, attention_probs, full_mask
from vlm_jax.nn.axis_names import LM_AXES
from vlm_jax.nn.multi_head import AttentionSpec, MultiHeadAttention
from vlm_jax.nn.rope import rope_tables

TOL = dict(rtol=1e-5, atol=1e-5)


def _randomize(module: nnx.Module, seed: int) -> None:
    """Every parameter (zero biases, unit norm scales too) gets N(0, 0.3²) noise added."""
    rng = np.random.default_rng(seed)
    state = nnx.state(module, nnx.Param)
    nnx.update(module, jax.tree.map(lambda x: x + jnp.asarray(0.3 * rng.normal(size=x.shape), x.dtype), state))


def _weights(attn: MultiHeadAttention) -> dict[str, np.ndarray | None]:
    """Kernels and biases by role, from either layout (float64)."""
    out = {}
    for role, flat in (("q", "q"), ("k", "k"), ("v", "v"), ("out", "o")):
        if attn.spec.layout == "nested":
            proj = getattr(attn, role)
            kernel, bias = (None, None) if proj is None else (proj.kernel, proj.bias)
        else:
            kernel, bias = getattr(attn, f"{flat}_kernel", None), getattr(attn, f"{flat}_bias", None)
        out[role] = None if kernel is None else np.asarray(kernel[...], np.float64)
        out[role + "_bias"] = None if bias is None else np.asarray(bias[...], np.float64)
    return out


def _rms(x, scale, eps):
    return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * scale


def _rotate(x, cos, sin):  # x [B, T, H, Dh], cos/sin [B, T, Dh]: the rotate-half RoPE
    half = x.shape[-1] // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], -1)
    return x * cos[:, :, None] + rotated * sin[:, :, None]


def _reference(attn, x, context, allowed, rope=None):
    """Per-head numpy attention: ``allowed bool [B, T, S]`` (None: all keys)."""
    spec, w = attn.spec, _weights(attn)
    x, context = np.asarray(x, np.float64), np.asarray(context, np.float64)
    b, t, _ = x.shape
    s = context.shape[1]
    h, kh, dh = spec.heads, spec.kv_heads, spec.head_dim

    def proj(inp, role):
        y = inp @ w[role].reshape(inp.shape[-1], -1)
        if w[role + "_bias"] is not None:
            y = y + w[role + "_bias"].reshape(-1)
        return y

    q, k, v = proj(x, "q"), proj(context, "k"), proj(context, "v")
    if attn.q_norm is not None:
        q = _rms(q, np.asarray(attn.q_norm.scale[...]), spec.qk_norm_eps)
        k = _rms(k, np.asarray(attn.k_norm.scale[...]), spec.qk_norm_eps)
    q, k, v = q.reshape(b, t, h, dh), k.reshape(b, s, kh, dh), v.reshape(b, s, kh, dh)
    if rope is not None:
        cos, sin = (np.asarray(a, np.float64) for a in rope)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
    heads = []
    for head in range(h):
        kv = head // (h // kh)  # query head h uses key/value head h // group
        logits = np.einsum("btd,bsd->bts", q[:, :, head], k[:, :, kv]) / np.sqrt(dh)
        if allowed is not None:
            logits = np.where(allowed, logits, -np.inf)
        with np.errstate(invalid="ignore"):  # fully masked rows become NaN; callers ignore them
            probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        heads.append(np.einsum("bts,bsd->btd", probs, v[:, :, kv]))
    y = np.stack(heads, axis=2).reshape(b, t, h * dh)
    if w["out"] is None:
        return y
    y = y @ w["out"].reshape(h * dh, -1)
    return y if w["out_bias"] is None else y + w["out_bias"]


def _build(spec, seed=0):
    attn = MultiHeadAttention(spec, rngs=nnx.Rngs(seed))
    _randomize(attn, seed + 1)
    return attn


def _inputs(seed, *shapes):
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.normal(size=shape), jnp.float32) for shape in shapes]


VALID = np.array([[True] * 7, [True] * 4 + [False] * 3, [False] + [True] * 5 + [False]])


@pytest.mark.parametrize("spec", [
    AttentionSpec(dim=24, heads=3, implementation="xla"),
    AttentionSpec(dim=24, heads=4, head_dim=5, qkv_bias=False, qk_norm_eps=1e-6, implementation="xla"),
    AttentionSpec(dim=24, heads=2, out_proj=False, implementation="xla"),
], ids=["plain", "qk_norm_no_bias", "no_out_proj"])
def test_self_attention_with_key_mask_matches_numpy(spec):
    attn = _build(spec)
    (x,) = _inputs(2, (3, 7, 24))
    got = jax.jit(lambda a: attn(a, mask=full_mask(jnp.asarray(VALID))))(x)
    allowed = np.broadcast_to(VALID[:, None, :], (3, 7, 7))
    np.testing.assert_allclose(np.asarray(got), _reference(attn, x, x, allowed), **TOL)


def test_cross_attention_with_another_width_and_key_mask_matches_numpy():
    attn = _build(AttentionSpec(dim=16, heads=4, context_dim=24, implementation="xla"))
    x, context = _inputs(3, (3, 5, 16), (3, 7, 24))
    got = jax.jit(lambda a, c: attn(a, c, mask=full_mask(jnp.asarray(VALID), num_queries=5)))(x, context)
    assert got.shape == (3, 5, 16)
    allowed = np.broadcast_to(VALID[:, None, :], (3, 5, 7))
    np.testing.assert_allclose(np.asarray(got), _reference(attn, x, context, allowed), **TOL)
    unmasked = jax.jit(lambda a, c: attn(a, c))(x, context)
    np.testing.assert_allclose(np.asarray(unmasked), _reference(attn, x, context, None), **TOL)


@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_grouped_query_causal_attention_with_rope_matches_numpy(layout):
    spec = AttentionSpec(dim=32, heads=4, kv_heads=2, head_dim=6, out_bias=False, axes=LM_AXES, implementation="xla",
                         layout=layout)
    attn = _build(spec)
    (x,) = _inputs(4, (3, 7, 32))
    mask_ar = jnp.asarray([[1] * 7, [0, 0, 0, 1, 1, 1, 1], [1] * 7], jnp.int32)  # row 1: a 3-token prefix
    positions = jnp.broadcast_to(jnp.arange(7), (3, 7))
    rope = rope_tables(positions, 6, 10000.0)
    got = jax.jit(lambda a: attn(a, mask=ar_mask(mask_ar, jnp.asarray(VALID)), rope=rope))(x)
    groups = np.cumsum(np.asarray(mask_ar), axis=1)
    allowed = (groups[:, None, :] <= groups[:, :, None]) & VALID[:, None, :]
    ref = _reference(attn, x, x, allowed, rope)
    rows = allowed.any(-1)  # fully masked query rows are unspecified
    np.testing.assert_allclose(np.asarray(got)[rows], ref[rows], **TOL)


def test_layouts_hold_the_same_tensors():
    nested = _build(AttentionSpec(dim=16, heads=4, kv_heads=2, out_bias=False, implementation="xla"))
    flat = MultiHeadAttention(dataclasses.replace(nested.spec, layout="flat"), rngs=nnx.Rngs(5))
    for role, name in (("q", "q"), ("k", "k"), ("v", "v"), ("out", "o")):
        getattr(flat, f"{name}_kernel")[...] = getattr(nested, role).kernel[...]
        if role != "out":
            getattr(flat, f"{name}_bias")[...] = getattr(nested, role).bias[...]
    names = {"/".join(map(str, path)) for path, _ in nnx.to_flat_state(nnx.state(flat, nnx.Param))}
    assert names == {"q_kernel", "q_bias", "k_kernel", "k_bias", "v_kernel", "v_bias", "o_kernel"}
    (x,) = _inputs(6, (2, 5, 16))
    np.testing.assert_array_equal(np.asarray(flat(x)), np.asarray(nested(x)))


def test_attention_probs_match_numpy_softmax_with_groups_and_mask():
    q, k = _inputs(7, (3, 2, 4, 5), (3, 7, 2, 5))
    probs = np.asarray(jax.jit(lambda a, b: attention_probs(a, b, full_mask(jnp.asarray(VALID), num_queries=2)))(q, k))
    assert probs.shape == (3, 4, 2, 7) and probs.dtype == np.float32
    q64, k64 = np.asarray(q, np.float64), np.asarray(k, np.float64)
    for head in range(4):
        logits = np.einsum("btd,bsd->bts", q64[:, :, head], k64[:, :, head // 2]) / np.sqrt(5)
        logits = np.where(VALID[:, None, :], logits, -np.inf)
        ref = np.exp(logits - logits.max(-1, keepdims=True))
        np.testing.assert_allclose(probs[:, head], ref / ref.sum(-1, keepdims=True), **TOL)
    assert np.all(probs[~np.broadcast_to(VALID[:, None, None, :], probs.shape)] == 0.0)


def test_bfloat16_inputs_get_a_float32_softmax():
    q, k = _inputs(8, (2, 3, 2, 8), (2, 6, 2, 8))
    probs = attention_probs(q.astype(jnp.bfloat16), k.astype(jnp.bfloat16), None)
    assert probs.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(probs.sum(-1)), 1.0, rtol=1e-6)


@pytest.mark.parametrize("bad, message", [
    (dict(dim=10, heads=3), "not divisible"),
    (dict(dim=12, heads=4, kv_heads=3), "multiple of kv_heads"),
    (dict(dim=12, heads=4, implementation="flash"), "implementation"),
    (dict(dim=12, heads=4, layout="fused"), "layout"),
    (dict(dim=12, heads=4, layout="flat"), "output bias"),
])
def test_bad_specs_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        AttentionSpec(**bad)
