"""HiRes-LLaVA SliceRestore adapter and slice merge/split (spec/methods.md §4.2).

References: numpy loops for the grid placement, torch ``conv2d(groups=D)`` / ``interpolate(bilinear)``
for the depth-wise conv and the up-sampling, the plain convolution of the unsliced feature map, and
the real ``vlm_jax.vision.vit.ViT`` for the zero-initialisation property.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from vlm_jax.hires.slice_grid import canvas_mask, merge_slices, merged_view_mask, split_slices
from vlm_jax.hires.slice_restore import (
    SliceContext,
    SliceRestoreAdapter,
    SliceRestoreConfig,
    depthwise_conv,
    masked_upsample,
)
from vlm_jax.presets import tiny_vision
from vlm_jax.vision.config import ViTConfig
from vlm_jax.vision.vit import ViT

GRIDS = [(1, 1), (3, 2), (2, 3), (1, 3), (3, 1), (2, 2)]
H, W, D = 4, 4, 8


def _batch(first_slice, grids=GRIDS, max_tiles=9, thumbnail=False, seed=0, hw=(H, W), d=D):
    """Random views [B, N, h, w, D] with the tile_mask of the given grids (+ a valid thumbnail after the
    tiles in InternVL order) and a padded tail."""
    n = first_slice + max_tiles + int(thumbnail)
    mask = np.zeros((len(grids), n), bool)
    for b, (r, c) in enumerate(grids):
        mask[b, :first_slice + r * c + int(thumbnail)] = True
    x = np.random.default_rng(seed).normal(size=(len(grids), n, *hw, d)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(grids, jnp.int32), jnp.asarray(mask)


@pytest.mark.parametrize("first_slice,thumbnail", [(1, False), (0, True)])
def test_merge_places_slices_row_major_and_split_inverts(first_slice, thumbnail):
    x, grid, mask = _batch(first_slice, thumbnail=thumbnail)
    kw = dict(first_slice=first_slice, max_rows=3, max_cols=3)
    canvas = jax.jit(lambda *a: merge_slices(*a, **kw))(x, grid, mask)
    back = jax.jit(lambda *a: split_slices(*a, **kw))(canvas, grid, mask)
    merged = np.asarray(merged_view_mask(grid, mask, **kw))
    cmask = np.asarray(canvas_mask(grid, mask, slice_hw=(H, W), **kw))
    x, canvas, back = np.asarray(x), np.asarray(canvas), np.asarray(back)
    assert canvas.shape == (len(GRIDS), 3 * H, 3 * W, D)
    for b, (rows, cols) in enumerate(GRIDS):
        ref = np.zeros((3 * H, 3 * W, D), np.float32)
        for k in range(rows * cols):
            r, c = divmod(k, cols)
            ref[r * H:(r + 1) * H, c * W:(c + 1) * W] = x[b, first_slice + k]
        np.testing.assert_array_equal(canvas[b], ref)
        expect_merged = np.zeros(x.shape[1], bool)
        expect_merged[first_slice:first_slice + rows * cols] = True
        np.testing.assert_array_equal(merged[b], expect_merged)
        np.testing.assert_array_equal(cmask[b], np.kron(np.pad(np.ones((rows, cols)), ((0, 3 - rows), (0, 3 - cols))),
                                                        np.ones((H, W))).astype(bool))
        np.testing.assert_array_equal(back[b][expect_merged], x[b][expect_merged])
        assert not back[b][~expect_merged].any()  # global view, thumbnail and padding get zeros


def test_merge_ignores_unmerged_views_and_checks_shapes():
    x, grid, mask = _batch(1)
    kw = dict(first_slice=1, max_rows=3, max_cols=3)
    noisy = np.asarray(x).copy()
    noisy[~np.asarray(merged_view_mask(grid, mask, **kw))] = np.inf
    np.testing.assert_array_equal(np.asarray(merge_slices(jnp.asarray(noisy), grid, mask, **kw)),
                                  np.asarray(merge_slices(x, grid, mask, **kw)))
    with pytest.raises(ValueError, match="grid"):
        merge_slices(x, grid[:2], mask, **kw)
    with pytest.raises(ValueError, match="canvas"):
        split_slices(jnp.zeros((6, 10, 12, D)), grid, mask, **kw)


@pytest.mark.parametrize("k,stride", [(3, 1), (5, 1), (2, 2), (3, 3)])
def test_depthwise_conv_matches_torch(k, stride):
    rng = np.random.default_rng(k)
    x = rng.normal(size=(2, 9, 12, D)).astype(np.float32)
    kernel = rng.normal(size=(k, k, D)).astype(np.float32)
    bias = rng.normal(size=(D,)).astype(np.float32)
    weight = torch.tensor(kernel).permute(2, 0, 1)[:, None]  # [D, 1, k, k]
    ref = torch.nn.functional.conv2d(torch.tensor(x).permute(0, 3, 1, 2), weight, torch.tensor(bias), stride=stride,
                                     padding=k // 2 if stride == 1 else 0, groups=D)
    out = depthwise_conv(jnp.asarray(x), jnp.asarray(kernel), jnp.asarray(bias), stride=stride)
    np.testing.assert_allclose(np.asarray(out), ref.permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("factor", [2, 3])
def test_masked_upsample_matches_torch_on_cropped_map(factor):
    rng = np.random.default_rng(factor)
    g = rng.normal(size=(1, 4, 5, D)).astype(np.float32)
    valid = np.zeros((1, 4, 5), bool)
    valid[:, :3, :2] = True  # the image covers the top-left 3x2 cells
    out = np.asarray(masked_upsample(jnp.asarray(g), jnp.asarray(valid), factor, "bilinear"))
    crop = torch.tensor(g[:, :3, :2]).permute(0, 3, 1, 2)
    ref = torch.nn.functional.interpolate(crop, scale_factor=factor, mode="bilinear", align_corners=False)
    np.testing.assert_allclose(out[:, :3 * factor, :2 * factor], ref.permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-6)
    assert not out[:, 3 * factor:].any() and not out[:, :, 2 * factor:].any()
    near = np.asarray(masked_upsample(jnp.asarray(g), jnp.asarray(valid), factor, "nearest"))
    ref = torch.nn.functional.interpolate(crop, scale_factor=factor, mode="nearest").permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(near[:, :3 * factor, :2 * factor], ref)


def _adapter(dim=D, seed=0, gamma=True, **overrides):
    cfg = SliceRestoreConfig(**{**dict(layers=(0, 1), max_rows=3, max_cols=3, heads=2), **overrides})
    adapter = SliceRestoreAdapter(cfg, dim, rngs=nnx.Rngs(seed))
    if gamma:
        for i, blk in enumerate(adapter.blocks):
            blk.gamma[...] = jnp.asarray(np.random.default_rng(100 + i).normal(size=(dim,)), jnp.float32)
    return adapter


def test_local_conv_on_merged_slices_equals_conv_on_unsliced_map():
    rows, cols = 2, 3
    rng = np.random.default_rng(3)
    whole = rng.normal(size=(1, rows * H, cols * W, D)).astype(np.float32)
    slices = whole.reshape(1, rows, H, cols, W, D).transpose(0, 1, 3, 2, 4, 5).reshape(1, rows * cols, H, W, D)
    views = np.concatenate([rng.normal(size=(1, 1, H, W, D)), slices, rng.normal(size=(1, 2, H, W, D))], 1)
    grid, mask = jnp.array([[rows, cols]]), jnp.asarray([[True] * (1 + rows * cols) + [False] * 2])
    kw = dict(first_slice=1, max_rows=3, max_cols=3)
    blk = _adapter().blocks[0]
    canvas = merge_slices(jnp.asarray(views, jnp.float32), grid, mask, **kw)
    cmask = canvas_mask(grid, mask, slice_hw=(H, W), **kw)
    local = split_slices(jax.jit(blk.local_fusion)(canvas, cmask), grid, mask, **kw)[:, 1:1 + rows * cols]
    ref = np.asarray(jax.jit(blk.local_fusion)(jnp.asarray(whole), jnp.ones(whole.shape[:3], bool)))
    ref = ref.reshape(1, rows, H, cols, W, D).transpose(0, 1, 3, 2, 4, 5).reshape(1, rows * cols, H, W, D)
    np.testing.assert_array_equal(np.asarray(local), ref)


def _tokens(first_slice=1, cls=True, seed=0):
    x, grid, mask = _batch(first_slice, seed=seed)
    b, n = mask.shape
    x = x.reshape(b * n, H * W, D)
    if cls:
        x = jnp.concatenate([jnp.asarray(np.random.default_rng(seed + 7).normal(size=(b * n, 1, D)), x.dtype), x], 1)
    return x, SliceContext(grid=grid, tile_mask=mask, slice_hw=(H, W), first_slice=first_slice)


@pytest.mark.parametrize("cls", [True, False])
@pytest.mark.parametrize("overrides", [dict(), dict(down_mode="avg", up_mode="nearest", local_stride=2, local_kernel=2,
                                                    global_pos=False)])
def test_unmerged_views_padding_and_out_of_grid_never_influence_slices(cls, overrides):
    adapter = _adapter(**overrides)
    x, ctx = _tokens(cls=cls)
    hook = jax.jit(adapter.hooks(ctx)[1])
    out = np.asarray(hook(x))
    merged = np.asarray(merged_view_mask(ctx.grid, ctx.tile_mask, first_slice=1, max_rows=3, max_cols=3)).reshape(-1)
    x_np = np.asarray(x)
    assert np.abs(out[merged] - x_np[merged]).max() > 1e-3  # the adapter does something on slices
    np.testing.assert_array_equal(out[~merged], x_np[~merged])  # global view and padding pass unchanged
    if cls:
        np.testing.assert_array_equal(out[:, 0], x_np[:, 0])  # CLS untouched
    noisy = x_np.copy()
    noisy[~merged] = np.random.default_rng(5).normal(size=noisy[~merged].shape) * 100
    np.testing.assert_array_equal(np.asarray(hook(jnp.asarray(noisy)))[merged], out[merged])
    # canvas regions outside the grid are ignored by the fusion block itself
    b, n = ctx.tile_mask.shape
    kw = dict(first_slice=1, max_rows=3, max_cols=3)
    canvas = merge_slices(x[:, int(cls):].reshape(b, n, H, W, D), ctx.grid, ctx.tile_mask, **kw)
    cmask = canvas_mask(ctx.grid, ctx.tile_mask, slice_hw=(H, W), **kw)
    junk = jnp.where(cmask[..., None], canvas, 1e3)
    blk = jax.jit(adapter.blocks[1])
    np.testing.assert_array_equal(np.asarray(blk(junk, cmask)), np.asarray(blk(canvas, cmask)))


@pytest.mark.parametrize("overrides", [dict(), dict(up_mode="nearest", down_mode="avg")])
def test_output_does_not_depend_on_canvas_capacity(overrides):
    """An example's result is the same on a 3x3-slice canvas as on one exactly its size: out-of-grid
    cells are fully masked (conv padding, attention keys, bilinear weights)."""
    x, ctx = _tokens(cls=False)
    n = ctx.tile_mask.shape[1]
    big = _adapter(**overrides)
    out_big = np.asarray(jax.jit(big.hooks(ctx)[0])(x)).reshape(len(GRIDS), n, H * W, D)
    for b in (1, 2, 5):  # grids 3x2, 2x3, 2x2
        rows, cols = GRIDS[b]
        small = _adapter(**{**overrides, "max_rows": rows, "max_cols": cols})
        nnx.update(small, nnx.state(big))
        one = SliceContext(grid=ctx.grid[b:b + 1], tile_mask=ctx.tile_mask[b:b + 1], slice_hw=(H, W), first_slice=1)
        out = np.asarray(jax.jit(small.hooks(one)[0])(x[b * n:(b + 1) * n]))
        np.testing.assert_allclose(out, out_big[b], rtol=1e-5, atol=1e-5)


def test_zero_init_leaves_vit_unchanged_and_trained_gamma_changes_it():
    vcfg = ViTConfig.from_dict(tiny_vision("clip"))
    vit = ViT(vcfg, rngs=nnx.Rngs(0))
    side = vcfg.grid
    grids = [(2, 3), (1, 2)]
    mask = np.zeros((2, 7), bool)
    mask[0, :7], mask[1, :3] = True, True
    ctx = SliceContext(grid=jnp.asarray(grids), tile_mask=jnp.asarray(mask), slice_hw=(side, side), first_slice=1)
    pixels = jnp.asarray(np.random.default_rng(1).normal(size=(14, vcfg.image_size, vcfg.image_size, 3)), jnp.float32)
    adapter = _adapter(dim=vcfg.hidden, gamma=False, layers=(0,))

    @nnx.jit
    def encode(vit, adapter, pixels, ctx):
        return vit(pixels, hooks=adapter.hooks(ctx)).patches, vit(pixels, hooks={0: lambda t: t}).patches

    out, ref = (np.asarray(a) for a in encode(vit, adapter, pixels, ctx))
    np.testing.assert_array_equal(out, ref)
    adapter.blocks[0].gamma[...] = jnp.full((vcfg.hidden,), 0.5)
    changed = np.asarray(encode(vit, adapter, pixels, ctx)[0])
    merged = np.asarray(merged_view_mask(ctx.grid, ctx.tile_mask, first_slice=1, max_rows=3, max_cols=3)).reshape(-1)
    assert np.abs(changed[merged] - ref[merged]).max() > 1e-2
    np.testing.assert_array_equal(changed[~merged], ref[~merged])


def test_config_and_geometry_errors():
    with pytest.raises(ValueError, match="lyers"):
        SliceRestoreConfig.from_dict(dict(lyers=(0,), max_rows=2, max_cols=2))
    for bad in (dict(layers=()), dict(local_kernel=2), dict(local_stride=2), dict(down_mode="max"),
                dict(up_mode="cubic"), dict(layers=(1, 1))):
        with pytest.raises(ValueError):
            SliceRestoreConfig(**{**dict(layers=(0,), max_rows=2, max_cols=2), **bad})
    adapter = _adapter(down=3)
    x, ctx = _tokens()
    with pytest.raises(ValueError, match="down"):
        adapter.hooks(ctx)
    with pytest.raises(ValueError, match="SliceRestore expects"):
        _adapter().hooks(ctx)[0](x[:, :5])
