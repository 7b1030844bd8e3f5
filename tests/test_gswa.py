"""GSWA (spec/methods.md §3.2): identity init, weight invariants, masking, a torch reference of the
attention path, and the LayerNorm cancellation that forces weighting after InternVL's projector."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from vlm_jax.hires.gswa import GSWA, GSWAConfig, apply_tile_weights, gswa_param_count, view_roles
from vlm_jax.projectors import InternVLProjector, ProjectorConfig
from vlm_jax.sharding import make_mesh, state_shardings

DV, N = 32, 6
HEADS = ("attention", "softmax", "sigmoid")


@nnx.jit(static_argnames="global_index")
def _run(model, cls, mask, global_index=-1):
    return model(cls, mask, global_index=global_index)


def _cfg(head="attention", **kw):
    return GSWAConfig(dim=48, layers=2, heads=4, mlp_ratio=2, weight_head=head, **kw)


def _inputs(seed, counts=None):
    """CLS ``[B, N, DV]`` and a prefix ``tile_mask`` with per-example valid counts (random in 0..N if not
    given). ``B = 8`` always, so the jitted ``_run`` compiles once per config."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, N + 1, size=8) if counts is None else np.asarray(counts)
    assert counts.shape == (8,)
    mask = np.arange(N)[None] < counts[:, None]
    cls = rng.normal(size=(len(counts), N, DV)).astype(np.float32) * 2.0
    return jnp.asarray(cls), jnp.asarray(mask)


def _perturb(model, seed, scale=0.3):
    """Add Gaussian noise to every parameter (leaves the identity-at-init regime)."""
    rng = np.random.default_rng(seed)
    state = nnx.state(model, nnx.Param)
    noisy = jax.tree.map(lambda x: jnp.asarray(x + scale * rng.normal(size=x.shape).astype(np.float32)), state)
    nnx.update(model, noisy)
    return model


def _expected_roles(mask, global_index=-1):
    mask = np.asarray(mask)
    count = mask.sum(1)
    thumb = np.zeros_like(mask)
    for b, c in enumerate(count):
        if c >= 2:
            thumb[b, c - 1 if global_index == -1 else 0] = True
    return thumb, mask & ~thumb, count


def test_config_validation():
    assert GSWAConfig.from_dict({"dim": 64, "heads": 4}) == GSWAConfig(dim=64, heads=4)
    with pytest.raises(ValueError, match="unknown GSWAConfig keys"):
        GSWAConfig.from_dict({"dim": 64, "hidden": 3})
    with pytest.raises(ValueError, match="divisible"):
        GSWAConfig(dim=30, heads=4)
    with pytest.raises(ValueError, match="weight_head"):
        GSWAConfig(weight_head="relu")
    with pytest.raises(ValueError, match="global_index"):
        view_roles(jnp.ones((1, 3), bool), 1)
    model = GSWA(_cfg(), DV, rngs=nnx.Rngs(0))
    cls, mask = _inputs(0)
    with pytest.raises(ValueError, match="cls must be"):
        model(cls[..., :-1], mask)
    with pytest.raises(ValueError, match="tile_mask must be bool"):
        model(cls, mask.astype(jnp.int32))
    with pytest.raises(ValueError, match="apply_tile_weights"):
        apply_tile_weights(jnp.ones((2, N, 3, 4)), jnp.ones((2, N + 1)))


def test_param_count_preset_and_formula():
    assert gswa_param_count(GSWAConfig(), 1024) == 15_749_120  # documented SleighVL preset
    d, m, dv = 48, 96, DV
    block = 4 * (d * d + d) + (d * m + m) + (m * d + d) + 4 * d
    lift_and_type = dv * d + d + 2 * d
    attention_head = 2 * d + 2 * (d * d + d)
    scalar_head = 2 * d + (d * d + d) + (d + 1)
    assert gswa_param_count(_cfg("attention"), dv) == lift_and_type + block + attention_head
    assert gswa_param_count(_cfg("softmax"), dv) == lift_and_type + 2 * block + scalar_head


@pytest.mark.parametrize("head", ("attention", "softmax"))
def test_every_param_has_known_logical_axes(head):
    abstract = nnx.eval_shape(lambda: GSWA(_cfg(head), DV, rngs=nnx.Rngs(0)))
    params = nnx.state(abstract, nnx.Param)
    for path, var in nnx.to_flat_state(params):
        names = var.get_metadata().get("out_sharding")
        assert names is not None and len(names) == var.get_value().ndim, path
    specs = jax.tree.leaves(state_shardings(params, make_mesh(data=2, fsdp=2, tensor=2)))
    assert any(any(ax is not None for ax in sh.spec) for sh in specs)  # something is actually sharded


@pytest.mark.parametrize("head", HEADS)
def test_identity_at_init_exactly_one(head):
    model = GSWA(_cfg(head), DV, rngs=nnx.Rngs(1))
    for seed in range(12):
        cls, mask = _inputs(seed)
        for gi in (-1, 0):
            w = np.asarray(_run(model, cls, mask, global_index=gi))
            assert w.dtype == np.float32
            np.testing.assert_array_equal(w, np.asarray(mask, np.float32))


@pytest.mark.parametrize("head", HEADS)
def test_weight_invariants_after_perturbation(head):
    model = _perturb(GSWA(_cfg(head), DV, rngs=nnx.Rngs(2)), seed=3)
    cls, mask = _inputs(4, counts=[6, 5, 4, 3, 6, 2, 1, 0])
    for gi in (-1, 0):
        w = np.asarray(_run(model, cls, mask, global_index=gi))
        thumb, grid, count = _expected_roles(mask, gi)
        assert np.all(np.isfinite(w)) and np.all(w >= 0)
        np.testing.assert_array_equal(w[thumb], 1.0)
        np.testing.assert_array_equal(w[~np.asarray(mask)], 0.0)
        np.testing.assert_array_equal(w[count == 1].sum(1), 1.0)  # single view: weight 1
        multi = count >= 3  # at least two grid tiles
        grid_w = np.where(grid, w, np.nan)[multi]
        if head == "sigmoid":
            assert np.all(np.nanmax(grid_w, 1) < 2.0)
        else:  # renormalised: mean 1 over the grid tiles of every example
            np.testing.assert_allclose(np.nanmean(grid_w, 1), 1.0, rtol=1e-5)
        assert np.nanstd(grid_w) > 0.05  # the perturbation really moved the weights away from 1


def test_attention_head_matches_torch_reference():
    """Whole attention-head path against torch's TransformerEncoderLayer + MultiheadAttention weights."""
    cfg = _cfg("attention")
    model = _perturb(GSWA(cfg, DV, rngs=nnx.Rngs(5)), seed=6)
    cls, mask = _inputs(7, counts=[6, 4, 3, 2, 1, 5, 0, 6])
    w = np.asarray(_run(model, cls, mask))
    thumb, grid, _ = _expected_roles(mask)

    d = cfg.dim
    t = lambda a: torch.tensor(np.asarray(a))  # noqa: E731

    def linear(kernel):  # ours [D, H, Dh] (q/k/v) or [H, Dh, D] (out) → torch [out, in]
        return t(kernel).reshape(d, d).T

    blk = model.blocks[0]
    layer = torch.nn.TransformerEncoderLayer(d, cfg.heads, cfg.mlp_ratio * d, dropout=0.0, activation="gelu",
                                             layer_norm_eps=cfg.norm_eps, batch_first=True, norm_first=True)
    attn, head = blk.attn, model.head
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(torch.cat([linear(attn.q.kernel[...]), linear(attn.k.kernel[...]),
                                                        linear(attn.v.kernel[...])]))
        layer.self_attn.in_proj_bias.copy_(torch.cat([t(attn.q.bias[...]).flatten(), t(attn.k.bias[...]).flatten(),
                                                      t(attn.v.bias[...]).flatten()]))
        layer.self_attn.out_proj.weight.copy_(linear(attn.out.kernel[...]))
        layer.self_attn.out_proj.bias.copy_(t(attn.out.bias[...]))
        for tl, jl in ((layer.linear1, blk.mlp.fc1), (layer.linear2, blk.mlp.fc2)):
            tl.weight.copy_(t(jl.kernel[...]).T)
            tl.bias.copy_(t(jl.bias[...]))
        for tn, jn in ((layer.norm1, blk.norm1), (layer.norm2, blk.norm2)):
            tn.weight.copy_(t(jn.scale[...]))
            tn.bias.copy_(t(jn.bias[...]))
        mha = torch.nn.MultiheadAttention(d, cfg.heads, batch_first=True)
        mha.in_proj_weight.copy_(torch.cat([linear(head.q.kernel[...]), linear(head.k.kernel[...]), torch.eye(d)]))
        mha.in_proj_bias.copy_(torch.cat([t(head.q.bias[...]).flatten(), t(head.k.bias[...]).flatten(),
                                          torch.zeros(d)]))

        x = t(np.where(np.asarray(mask)[..., None], cls, 0.0)) @ t(model.lift.kernel[...]) + t(model.lift.bias[...])
        x = x + t(model.type_embed[...])[torch.tensor(thumb.astype(np.int64))]
        pad = torch.tensor(~np.asarray(mask))
        x = layer(x, src_key_padding_mask=pad)
        x = torch.nn.functional.layer_norm(x, (d,), t(head.norm.scale[...]), t(head.norm.bias[...]), cfg.norm_eps)
        _, probs = mha(x, x, x, key_padding_mask=pad, need_weights=True, average_attn_weights=True)
    probs = probs.numpy()
    for b in range(thumb.shape[0]):
        if not thumb[b].any():
            continue
        alpha = probs[b, np.argmax(thumb[b])] * grid[b]
        ref = grid[b].sum() * alpha / alpha.sum()
        np.testing.assert_allclose(w[b][grid[b]], ref[grid[b]], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("head", HEADS)
def test_padded_views_do_not_leak(head):
    model = _perturb(GSWA(_cfg(head), DV, rngs=nnx.Rngs(8)), seed=9)
    cls, mask = _inputs(10, counts=[5, 3, 4, 1, 2, 6, 0, 3])
    w = np.asarray(_run(model, cls, mask))
    junk = jnp.where(mask[..., None], cls, 1e4 * jax.random.normal(jax.random.key(0), cls.shape))
    np.testing.assert_array_equal(np.asarray(_run(model, junk, mask)), w)
    nan_pad = jnp.where(mask[..., None], cls, jnp.nan)
    np.testing.assert_array_equal(np.asarray(_run(model, nan_pad, mask)), w)
    alone = np.asarray(_run(model, cls[:, :3], mask[:, :3] | (np.arange(8) == 7)[:, None]))
    np.testing.assert_allclose(w[7, :3], alone[7], rtol=1e-5, atol=1e-6)  # same example without padding


@pytest.mark.parametrize("head", ("attention", "softmax"))
def test_global_view_first_is_a_permutation_of_thumbnail_last(head):
    """No tile positions are embedded, so moving the thumbnail from last to first permutes the weights."""
    model = _perturb(GSWA(_cfg(head), DV, rngs=nnx.Rngs(11)), seed=12)
    counts = [6, 4, 3, 2, 5, 1, 0, 6]
    cls, mask = _inputs(13, counts=counts)
    w_last = np.asarray(_run(model, cls, mask, global_index=-1))
    orders = np.stack([np.r_[c - 1, np.arange(c - 1), np.arange(c, N)] if c else np.arange(N) for c in counts])
    moved = jnp.take_along_axis(cls, jnp.asarray(orders)[..., None], axis=1)
    w_first = np.asarray(_run(model, moved, mask, global_index=0))
    np.testing.assert_allclose(w_first, np.take_along_axis(w_last, orders, axis=1), rtol=1e-5, atol=1e-6)


def test_jit_mixed_valid_counts_rows_are_independent():
    """One compiled call, eight grids: reordering the batch only reorders the weights."""
    model = _perturb(GSWA(_cfg(), DV, rngs=nnx.Rngs(14)), seed=15)
    cls, mask = _inputs(16, counts=[6, 1, 0, 3, 2, 5, 4, 6])
    w = np.asarray(_run(model, cls, mask))
    perm = np.array([3, 7, 0, 5, 1, 6, 2, 4])
    np.testing.assert_allclose(np.asarray(_run(model, cls[perm], mask[perm])), w[perm], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(w[2], 0.0)  # all-padding example
    np.testing.assert_array_equal(w[1], [1, 0, 0, 0, 0, 0])  # single view


def test_layernorm_cancels_weights_before_internvl_projector():
    """spec §3.2: positive per-view scales before InternVL's mlp1 vanish in its LayerNorm; after it, they act."""
    proj = InternVLProjector(DV, 24, ProjectorConfig(kind="internvl"), rngs=nnx.Rngs(17))
    rng = np.random.default_rng(18)
    feats = jnp.asarray(rng.normal(size=(2, N, 16, DV)).astype(np.float32) * 3.0)  # 4x4 patches per view
    weights = jnp.asarray(rng.uniform(0.5, 2.0, size=(2, N)).astype(np.float32))
    base = np.asarray(proj(feats, (4, 4)))
    before = np.asarray(proj(apply_tile_weights(feats, weights), (4, 4)))
    np.testing.assert_allclose(before, base, atol=1e-5, rtol=0)
    after = np.asarray(apply_tile_weights(proj(feats, (4, 4)), weights))
    assert np.max(np.abs(after - base)) > 0.1
    np.testing.assert_allclose(after, base * np.asarray(weights)[:, :, None, None], rtol=1e-6)


@pytest.mark.parametrize("head", HEADS)
def test_gradient_reaches_gswa_through_tile_weights(head):
    model = GSWA(_cfg(head), DV, rngs=nnx.Rngs(19))
    cls, mask = _inputs(20, counts=[6, 4, 0, 1, 3, 2, 5, 6])
    tokens = jax.random.normal(jax.random.key(1), (8, N, 3, 8))
    target = jax.random.normal(jax.random.key(2), (8, N, 3, 8))

    def loss(m):
        return jnp.sum(apply_tile_weights(tokens, m(cls, mask)) * target)

    grad_fn = nnx.jit(nnx.grad(loss))
    grads = grad_fn(model)
    flat = {"/".join(map(str, k)): np.asarray(v) for k, v in nnx.to_flat_state(grads)}
    assert all(np.all(np.isfinite(g)) for g in flat.values())
    # identity init is still trainable: the zero-initialised layer receives gradient
    trained = "head/q/kernel" if head == "attention" else "head/mlp/fc2/kernel"
    assert np.abs(flat[trained]).max() > 1e-4, flat[trained]
    _perturb(model, seed=21)
    flat = {"/".join(map(str, k)): np.asarray(v) for k, v in nnx.to_flat_state(grad_fn(model))}
    assert np.abs(flat["lift/kernel"]).max() > 1e-4
