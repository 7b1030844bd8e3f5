"""The SliME connector (spec/methods.md §6.1, §6.4, §6.7): raster order, token layout, stage options."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.slime_helpers import TINY, jit_call, randomize_params
from vlm_jax.hires.slime import (
    GatedGlobalAdapter,
    Resampler,
    SlimeConfig,
    SlimeConnector,
    num_image_slots,
    num_visual_tokens_capacity,
    raster_local_tokens,
)

P, DV, D, G = 16, 32, 32, 2
GRIDS = np.array([[1, 2], [2, 2], [2, 1], [1, 3]], np.int32)
N = 1 + 4  # global view + at most 4 slices


def numpy_raster(tokens: np.ndarray, rows: int, cols: int, g: int) -> np.ndarray:
    """The reference code's ``view(rows, cols, g, g, -1).permute(0, 2, 1, 3, 4).flatten(0, 3)``."""
    d = tokens.shape[-1]
    return tokens[:rows * cols].reshape(rows, cols, g, g, d).transpose(0, 2, 1, 3, 4).reshape(-1, d)


def batch(seed: int = 0):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(len(GRIDS), N, P, DV)).astype(np.float32)
    tile_mask = np.arange(N)[None] <= GRIDS.prod(-1)[:, None]
    feats[~tile_mask] = 1e3 * rng.normal(size=feats[~tile_mask].shape)  # padded views: garbage
    text = rng.normal(size=(len(GRIDS), 6, D)).astype(np.float32)
    prompt = np.arange(6)[None] < np.array([[6], [3], [1], [4]])
    return [jnp.asarray(a) for a in (feats, tile_mask, GRIDS, text, prompt)]


def make(**changes) -> SlimeConnector:
    module = SlimeConnector(dataclasses.replace(TINY, **changes), DV, D, rngs=nnx.Rngs(0))
    randomize_params(module, seed=1)
    return module


def test_raster_order_matches_reference_for_several_grids():
    s, t = 6, 9  # g = 3
    tokens = np.random.default_rng(0).normal(size=(4, s, t, 5)).astype(np.float32)
    grids = np.array([[2, 3], [3, 2], [1, 4], [1, 1]], np.int32)
    slice_mask = np.arange(s)[None] < grids.prod(-1)[:, None]
    out, valid = jax.jit(raster_local_tokens, static_argnums=3)(jnp.asarray(tokens), jnp.asarray(grids),
                                                              jnp.asarray(slice_mask), 3)
    for b, (rows, cols) in enumerate(grids):
        n = rows * cols * t
        np.testing.assert_array_equal(np.asarray(out)[b, :n], numpy_raster(tokens[b], rows, cols, 3))
        np.testing.assert_array_equal(np.asarray(valid)[b], np.arange(s * t) < n)
        assert not np.asarray(out)[b, n:].any()


def test_layout_with_gamma_one():
    module = make()
    feats, tile_mask, grid, text, prompt = batch()
    visual, valid, n_kept = jit_call(module, feats, tile_mask, grid, text, prompt, gamma=1.0)
    assert visual.shape == (4, num_visual_tokens_capacity(module.cfg, N, P), D) == (4, P + 1 + 4 * G * G, D)

    @nnx.jit
    def branches(m, f):  # the global adapter on view 0; local resampler → shared MLP on the slices
        return m.projector(f[:, 0], (4, 4)), m.projector.mlp(m.sampler(f[:, 1:], (4, 4)))

    glob, local = branches(module, feats)
    np.testing.assert_allclose(np.asarray(visual[:, :P]), np.asarray(glob), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(visual[:, P]), np.broadcast_to(np.asarray(module.separator[...]), (4, D)))
    for b, (rows, cols) in enumerate(GRIDS):
        n_local = rows * cols * G * G
        assert int(n_kept[b]) == n_local
        assert int(valid[b].sum()) == num_image_slots(module.cfg, rows * cols, P) == P + 1 + n_local
        np.testing.assert_array_equal(np.asarray(valid[b]), np.arange(visual.shape[1]) < P + 1 + n_local)
        np.testing.assert_allclose(np.asarray(visual[b, P + 1:P + 1 + n_local]),
                                   numpy_raster(np.asarray(local)[b], rows, cols, G), rtol=1e-5, atol=1e-6)


def test_padded_views_never_influence_valid_tokens():
    module = make()
    feats, tile_mask, grid, text, prompt = batch()
    other = jnp.where(tile_mask[:, :, None, None], feats, -feats)
    for gamma in (1.0, 0.5):
        a = jit_call(module, feats, tile_mask, grid, text, prompt, gamma=gamma)
        b = jit_call(module, other, tile_mask, grid, text, prompt, gamma=gamma)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_selection_keeps_an_ordered_subsequence_guided_by_the_text():
    module = make()
    feats, tile_mask, grid, text, prompt = batch()
    full, full_valid, _ = jit_call(module, feats, tile_mask, grid, text, prompt, gamma=1.0)
    sel, sel_valid, n_kept = jit_call(module, feats, tile_mask, grid, text, prompt, gamma=0.7)
    for b in range(4):
        n_all = int(full_valid[b].sum()) - P - 1
        kept = np.asarray(sel[b, P + 1:P + 1 + int(n_kept[b])])
        assert 0 < len(kept) < n_all
        np.testing.assert_array_equal(np.asarray(sel_valid[b]), np.arange(sel.shape[1]) < P + 1 + len(kept))
        candidates = np.asarray(full[b, P + 1:P + 1 + n_all])
        pos = [int(np.argmin(np.abs(candidates - k).max(-1))) for k in kept]
        assert pos == sorted(set(pos))  # distinct, spatial order preserved
        np.testing.assert_allclose(candidates[pos], kept, rtol=1e-5, atol=1e-5)  # jit vs eager
    # a prompt made of one local token's embedding selects that token first
    target = full[:, P + 1 + 3]
    only_first = jnp.arange(text.shape[1])[None] == 0
    top, _, n_one = jit_call(module, feats, tile_mask, grid, text.at[:, 0].set(target), only_first, gamma=1e-6)
    np.testing.assert_array_equal(np.asarray(n_one), 1)
    np.testing.assert_allclose(np.asarray(top[:, P + 1]), np.asarray(target), rtol=1e-6)


def test_stage_options():
    feats, tile_mask, grid, text, prompt = batch()
    both = make()
    local_only, global_only = make(local_only=True), make(global_only=True, expert=0)
    full, _, _ = jit_call(both, feats, tile_mask, grid, text, prompt, gamma=1.0)
    vis, valid, n_kept = jit_call(local_only, feats, tile_mask, grid, text, prompt, gamma=1.0)
    assert vis.shape[1] == num_visual_tokens_capacity(local_only.cfg, N, P) == 4 * G * G
    np.testing.assert_array_equal(np.asarray(valid.sum(-1)), GRIDS.prod(-1) * G * G)
    np.testing.assert_allclose(np.asarray(vis), np.asarray(full[:, P + 1:]), rtol=1e-6)
    vis, valid, n_kept = jit_call(global_only, feats[:, :1], tile_mask[:, :1], grid, text, prompt)
    assert vis.shape[1] == num_visual_tokens_capacity(global_only.cfg, N, P) == P
    np.testing.assert_allclose(np.asarray(vis), np.asarray(global_only.projector.mlp(feats[:, 0])), rtol=1e-6)
    assert np.asarray(valid).all() and not np.asarray(n_kept).any()
    with pytest.raises(ValueError, match="mutually exclusive"):
        SlimeConfig(global_only=True, local_only=True)


def test_separator_from_llm_token_embedding():
    module = make(separator="token")
    assert module.separator is None
    feats, tile_mask, grid, text, prompt = batch()
    with pytest.raises(ValueError, match="separator_embed"):
        jit_call(module, feats, tile_mask, grid, text, prompt)
    embed = jnp.arange(D, dtype=jnp.float32)
    visual, valid, _ = jit_call(module, feats, tile_mask, grid, text, prompt, separator_embed=embed)
    np.testing.assert_array_equal(np.asarray(visual[:, P]), np.broadcast_to(np.arange(D), (4, D)))


def test_training_noise_comes_from_the_rng():
    module = make()
    args = batch()
    with pytest.raises(ValueError, match="rng"):
        jit_call(module, *args, train=True)
    a = jit_call(module, *args, train=True, rng=jax.random.key(0))
    again = jit_call(module, *args, train=True, rng=jax.random.key(0))[0]
    np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(again))
    other = jit_call(module, *args, train=True, rng=jax.random.key(1))[0]
    assert not np.allclose(np.asarray(a[0][:, :P]), np.asarray(other[:, :P]))
    np.testing.assert_array_equal(np.asarray(jit_call(module, *args, rng=jax.random.key(6))[0]),
                                  np.asarray(jit_call(module, *args, rng=jax.random.key(5))[0]))


def test_config_and_preset_parameter_counts():
    with pytest.raises(ValueError, match="unknown SlimeConfig keys"):
        SlimeConfig.from_dict({"top_k": 1})
    assert SlimeConfig.from_dict({"top_p": 1.0}).top_p == 1.0
    cfg = SlimeConfig()

    def count(make_module, which=nnx.Param):
        return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(nnx.eval_shape(make_module), which)))

    adapter = count(lambda: GatedGlobalAdapter(cfg, 1024, 4096, rngs=nnx.Rngs(0)))
    global_resampler = count(lambda: Resampler(cfg.global_resampler, 1024, rngs=nnx.Rngs(0)))
    local_resampler = count(lambda: Resampler(cfg.local_resampler, 1024, rngs=nnx.Rngs(0)))
    mlp = 1024 * 4096 + 4096 + 4096 * 4096 + 4096
    assert adapter - global_resampler - mlp == 2 * 2048  # W_g and W_noise
    assert global_resampler == 576 * 1024 + 4 * (1024 * 1024 + 1024) + 3 * 2048  # ≈ 4.79M
    assert local_resampler == 144 * 1024 + 4 * (1024 * 1024 + 1024) + 3 * 2048  # ≈ 4.35M
    assert count(lambda: SlimeConnector(cfg, 1024, 4096, rngs=nnx.Rngs(0))) == (
        adapter + local_resampler + 4096)
