"""Splash attention (vlm_jax.nn.splash) against the XLA path, in Pallas interpret mode on CPU.

The XLA path (``jax.nn.dot_product_attention``) is the reference; it is itself checked once against
a naive numpy softmax attention. Outputs and gradients w.r.t. q, k, v must agree to ~1e-5 on every
query row that has at least one visible key (rows without one are unspecified padding).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from vlm_jax.nn.attention import AttentionMask, ar_mask, causal_mask, dot_product_attention, full_mask
from vlm_jax.nn.splash import prefix_lm_structure
from vlm_jax.sharding import make_mesh

B, T, H, DH = 2, 48, 4, 32
TOL = dict(rtol=1e-5, atol=2e-5)


def _qkv(kv_heads, t=T, s=T, dh=DH, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(B, t, H, dh)).astype(np.float32)
    k = rng.normal(size=(B, s, kv_heads, dh)).astype(np.float32)
    v = rng.normal(size=(B, s, kv_heads, dh)).astype(np.float32)
    return jnp.asarray(q), jnp.asarray(k), jnp.asarray(v)


def _lengths_mask(lengths, n=T, left=False):
    pos = np.arange(n)[None]
    lengths = np.asarray(lengths)[:, None]
    return jnp.asarray(pos >= n - lengths if left else pos < lengths)


def _masks():
    right = _lengths_mask([40, 48])
    left = _lengths_mask([30, 48], left=True)
    with_empty = _lengths_mask([40, 0])  # an all-padding example (e.g. an unused tile)
    prefix_right = jnp.asarray(np.arange(T)[None] >= np.array([[7], [25]]), jnp.int32)
    prefix_left = jnp.asarray(np.arange(T)[None] >= np.array([[27], [31]]), jnp.int32)  # 18 pads + 9
    # left-padded sequence whose pads carry mask_ar = 0: they share the first valid token's group
    pads_in_first_group = jnp.asarray(np.arange(T)[None] > np.array([[18], [0]]), jnp.int32)
    return {
        "full_padding": full_mask(with_empty),
        "causal_right_padding": causal_mask(right),
        "causal_with_empty_example": causal_mask(with_empty),
        "causal_left_padding": causal_mask(left),
        "prefix_lm_right_padding": ar_mask(prefix_right, right),
        "prefix_lm_left_padding": ar_mask(prefix_left, left),
        "left_pads_in_first_group": ar_mask(pads_in_first_group, left),
    }


def _visible_rows(mask):
    return jnp.any(mask.dense()[:, 0], axis=-1)  # [B, T]


@functools.partial(jax.jit, static_argnums=0)
def _loss_and_grads(impl, q, k, v, mask):
    """Output and d(weighted sum of visible rows)/d(q, k, v); jitted once per shape."""
    rows = _visible_rows(mask)[:, :, None, None]
    weights = jax.random.normal(jax.random.key(1), q.shape).astype(q.dtype)

    def loss(q, k, v):
        out = dot_product_attention(q, k, v, mask, implementation=impl)
        return jnp.sum(jnp.where(rows, out * weights, 0.0).astype(jnp.float32)), out

    (_, out), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(q, k, v)
    return out, grads


def _assert_matches_xla(q, k, v, mask, tol=TOL):
    """Splash vs XLA (run in float32 on the same inputs) on the rows that have a visible key."""
    out, grads = _loss_and_grads("splash", q, k, v, mask)
    ref_out, ref_grads = _loss_and_grads("xla", *(x.astype(jnp.float32) for x in (q, k, v)), mask)
    assert np.isfinite(out).all() and all(np.isfinite(g).all() for g in grads)
    rows = np.asarray(_visible_rows(mask))
    np.testing.assert_allclose(np.asarray(out, np.float32)[rows], ref_out[rows], **tol)
    for name, g, ref in zip("qkv", grads, ref_grads):
        np.testing.assert_allclose(np.asarray(g, np.float32), ref, **tol, err_msg=f"d/d{name}")


def test_xla_reference_matches_numpy_softmax():
    q, k, v = _qkv(kv_heads=2)
    mask = _masks()["prefix_lm_left_padding"]
    out = np.asarray(dot_product_attention(q, k, v, mask, implementation="xla"))
    allowed = np.asarray(mask.dense()[:, 0])  # [B, T, S]
    kk, vv = (np.repeat(np.asarray(x), 2, axis=2) for x in (k, v))
    logits = np.einsum("bthd,bshd->bhts", np.asarray(q), kk) / np.sqrt(DH)
    logits = np.where(allowed[:, None], logits, -np.inf)
    rows = allowed.any(-1)
    logits = np.where(rows[:, None, :, None], logits, 0.0)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    expected = np.einsum("bhts,bshd->bthd", probs, vv)
    np.testing.assert_allclose(out[rows], expected[rows], **TOL)


@pytest.mark.parametrize("name", list(_masks()))
def test_splash_matches_xla_with_grouped_query_attention(name):
    _assert_matches_xla(*_qkv(kv_heads=2), _masks()[name])


def test_multi_query_attention_in_bfloat16():
    q, k, v = (x.astype(jnp.bfloat16) for x in _qkv(kv_heads=1))
    _assert_matches_xla(q, k, v, _masks()["prefix_lm_left_padding"], tol=dict(rtol=2e-2, atol=2e-2))


def test_cross_attention_full_mask_with_other_lengths():
    q, k, v = _qkv(kv_heads=2, t=20, s=150)
    valid = _lengths_mask([150, 97], n=150)
    groups = jnp.zeros((B, 150), jnp.int32)
    mask = AttentionMask(groups[:, :20], groups, valid, causal=False)
    out = dot_product_attention(q, k, v, mask, implementation="splash")
    np.testing.assert_allclose(out, dot_product_attention(q, k, v, mask, implementation="xla"), **TOL)


def test_structure_detects_prefix_and_unsupported_groups():
    masks = _masks()
    _, _, need_prefix, supported = prefix_lm_structure(masks["causal_left_padding"])
    assert not need_prefix.any() and supported.all()
    prefix_seg, rest_seg, need_prefix, supported = prefix_lm_structure(masks["prefix_lm_right_padding"])
    assert need_prefix.all() and supported.all()
    np.testing.assert_array_equal(prefix_seg.sum(1), [7, 25])
    np.testing.assert_array_equal(rest_seg.sum(1), [40 - 7, 48 - 25])
    block_causal = np.ones((B, T), np.int32)
    block_causal[1, 30:33] = 0  # a second bidirectional block: not expressible with splash
    _, _, _, supported = prefix_lm_structure(ar_mask(jnp.asarray(block_causal), jnp.ones((B, T), bool)))
    np.testing.assert_array_equal(supported, [True, False])


def test_unsupported_example_gives_nan_only_there():
    q, k, v = _qkv(kv_heads=H)
    block_causal = np.ones((B, T), np.int32)
    block_causal[1, 30:33] = 0
    out = dot_product_attention(q, k, v, ar_mask(jnp.asarray(block_causal), jnp.ones((B, T), bool)),
                                implementation="splash")
    assert np.isfinite(out[0]).all() and np.isnan(out[1]).all()


def test_bad_inputs_raise():
    q, k, v = _qkv(kv_heads=2)
    with pytest.raises(ValueError, match="H % K"):
        dot_product_attention(q, k[:, :, :1].repeat(3, 2), v[:, :, :1].repeat(3, 2), None,
                              implementation="splash")
    with pytest.raises(ValueError, match="mask shapes"):
        bad = AttentionMask(jnp.zeros((B, T), jnp.int32), jnp.zeros((B, 8), jnp.int32), jnp.ones((B, T), bool))
        dot_product_attention(q, k, v, bad, implementation="splash")
    with pytest.raises(ValueError, match="T == S"):
        short = causal_mask(jnp.ones((B, 8), bool))
        dot_product_attention(q, k[:, :8], v[:, :8], AttentionMask(
            jnp.zeros((B, T), jnp.int32), short.kv_groups, short.kv_valid), implementation="splash")


def test_sharded_over_eight_devices_matches_xla():
    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    b = 4
    rng = np.random.default_rng(2)
    q = jnp.asarray(rng.normal(size=(b, T, H, 16)), jnp.float32)
    k, v = (jnp.asarray(rng.normal(size=(b, T, 2, 16)), jnp.float32) for _ in range(2))
    valid = _lengths_mask([40, 48, 33, 20])
    mask_ar = jnp.asarray(np.arange(T)[None] >= np.array([[5], [1], [12], [3]]), jnp.int32)
    mask = ar_mask(mask_ar, valid)
    rows = _visible_rows(mask)[:, :, None, None]

    def loss(impl, q, k, v, mask):
        return jnp.sum(jnp.where(rows, dot_product_attention(q, k, v, mask, implementation=impl) ** 2, 0.0))

    with jax.set_mesh(mesh):
        sharded = [jax.device_put(x, NamedSharding(mesh, P(("data", "fsdp"), None, "tensor"))) for x in (q, k, v)]
        grad_fn = jax.jit(jax.value_and_grad(lambda *a: loss("splash", *a), argnums=(0, 1, 2)))
        jaxpr = str(jax.make_jaxpr(grad_fn)(*sharded, mask))
        value, grads = grad_fn(*sharded, mask)
    assert "shard_map" in jaxpr
    ref_value, ref_grads = jax.value_and_grad(lambda *a: loss("xla", *a), argnums=(0, 1, 2))(q, k, v, mask)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)
    for g, ref in zip(grads, ref_grads):
        np.testing.assert_allclose(g, ref, **TOL)


def test_aot_compile_for_tpu_topology_contains_splash_kernel():
    from jax.experimental import topologies

    topo = topologies.get_topology_desc("v5p:2x2x1", "tpu")
    mesh = make_mesh(data=2, tensor=2, devices=topo.devices)
    b, t, dh = 4, 256, 64

    def loss(q, k, v, valid, mask_ar):
        out = dot_product_attention(q, k, v, ar_mask(mask_ar, valid), implementation="splash")
        return jnp.sum(out.astype(jnp.float32) ** 2)

    def spec(shape, dtype, pspec):
        return jax.ShapeDtypeStruct(shape, dtype, sharding=NamedSharding(mesh, pspec))

    heads = P("data", None, "tensor")
    args = (spec((b, t, H, dh), jnp.bfloat16, heads), spec((b, t, 2, dh), jnp.bfloat16, heads),
            spec((b, t, 2, dh), jnp.bfloat16, heads), spec((b, t), bool, P("data")),
            spec((b, t), jnp.int32, P("data")))
    with jax.set_mesh(mesh):
        compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(*args).compile()
    hlo = compiled.as_text()
    assert 'custom_call_target="tpu_custom_call"' in hlo
    assert "splash_mha_fwd_segmented" in hlo and "splash_mha_dkv_segmented" in hlo  # forward, fused backward
