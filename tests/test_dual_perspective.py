"""INF-LLaVA DEM (spec/methods.md §5.1 paper, §5.2 code).

Checks: the batched, reshape-windowed DEM equals a per-window reference loop written here with explicit
slicing (``x[i*h:(i+1)*h, j*w:(j+1)*w]`` blocks, ``x[i::n_rows, j::n_cols]`` phases), explicit per-head
attention on the module's (randomised) parameters and torch down-sampling, for the code and the paper
variants and for ``n_rows != n_cols``; bilinear resizing equals ``torch.nn.functional.interpolate``
and average pooling equals ``torch.nn.functional.avg_pool2d``; window split/merge round-trips;
recombination inverts the DCM cropping of :mod:`vlm_jax.tiling.dual`; the real preset (D = 1024,
24x24, n = 3) has the right output shape and 4,400,256 parameters; a sharded jitted call equals the
unsharded one.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx

from vlm_jax.hires.dual_perspective import DEMConfig, DualPerspectiveEnhancement
from vlm_jax.hires.dual_perspective_ops import (
    average_pool,
    bilinear_resize,
    merge_windows,
    recombine_views,
    split_windows,
)
from vlm_jax.sharding import init_sharded, make_mesh, use_mesh
from vlm_jax.tiling import contiguous_crops, strided_crops

TOL = dict(rtol=1e-5, atol=1e-5)


def _randomize(module: nnx.Module, seed: int) -> None:
    """Replace every parameter (zero biases, unit LN scales too) by N(0, 0.3²) noise + its init value."""
    state = nnx.state(module, nnx.Param)
    leaves, treedef = jax.tree.flatten(state)
    rng = np.random.default_rng(seed)
    noisy = [x + jnp.asarray(0.3 * rng.normal(size=x.shape), x.dtype) for x in leaves]
    nnx.update(module, jax.tree.unflatten(treedef, noisy))


def _window_slices(kind, i, j, h, w, n_rows, n_cols):
    if kind == "contiguous":
        return slice(None), slice(i * h, (i + 1) * h), slice(j * w, (j + 1) * w)
    return slice(None), slice(i, None, n_rows), slice(j, None, n_cols)


def _np(param):
    return np.asarray(param[...], np.float64)


def _dense(layer, x):
    """A projection as a matrix product: kernels ``[in, out]``, ``[D, H, Dh]`` (q/k/v) or ``[H, Dh, D]`` (out)."""
    return x @ _np(layer.kernel).reshape(x.shape[-1], -1) + _np(layer.bias).reshape(-1)


def _layer_norm(norm, x, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * _np(norm.scale) + _np(norm.bias)


def _ref_attention(att, query, context, heads):
    """Per-head softmax(QKᵀ/√dh)V on one window ``[B, T, D]``, then out proj / residual LN if present."""
    mha = att.attn
    q, k, v = _dense(mha.q, query), _dense(mha.k, context), _dense(mha.v, context)
    dh = q.shape[-1] // heads
    outs = []
    for head in range(heads):
        sl = slice(head * dh, (head + 1) * dh)
        scores = np.einsum("btd,bsd->bts", q[..., sl], k[..., sl]) / math.sqrt(dh)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        outs.append(np.einsum("bts,bsd->btd", probs / probs.sum(-1, keepdims=True), v[..., sl]))
    y = np.concatenate(outs, axis=-1)
    if mha.out is not None:
        y = _dense(mha.out, y)
    if att.norm is not None:
        y = _layer_norm(att.norm, y + query)
    return y


def _ref_dem(dem, views, h, w, n_rows, n_cols):
    """Loop-over-windows DEM in float64 numpy (+ torch GELU / down-sampling): ``[B, 2n+1, h*w, D] → [B, h*w, D]``."""
    cfg = dem.cfg
    views = np.asarray(views, np.float64)
    b, _, _, d = views.shape
    n = n_rows * n_cols
    v = views.reshape(b, 2 * n + 1, h, w, d)
    f_loc = np.full((b, n_rows * h, n_cols * w, d), np.nan)
    f_glo = f_loc.copy()
    for i in range(n_rows):
        for j in range(n_cols):
            f_loc[_window_slices("contiguous", i, j, h, w, n_rows, n_cols)] = v[:, i * n_cols + j]
            f_glo[_window_slices("strided", i, j, h, w, n_rows, n_cols)] = v[:, n + i * n_cols + j]
    global_kind, local_kind = ("contiguous", "strided") if cfg.window_pairing == "code" else ("strided", "contiguous")
    local_att = dem.attention if dem.local_attention is None else dem.local_attention
    g_enh, l_enh = np.full_like(f_loc, np.nan), np.full_like(f_loc, np.nan)
    for i in range(n_rows):
        for j in range(n_cols):
            sg = _window_slices(global_kind, i, j, h, w, n_rows, n_cols)
            out = _ref_attention(dem.attention, f_glo[sg].reshape(b, h * w, d), f_loc[sg].reshape(b, h * w, d),
                                 cfg.heads)
            g_enh[sg] = out.reshape(b, h, w, d)
            sl = _window_slices(local_kind, i, j, h, w, n_rows, n_cols)
            out = _ref_attention(local_att, f_loc[sl].reshape(b, h * w, d), f_glo[sl].reshape(b, h * w, d), cfg.heads)
            l_enh[sl] = out.reshape(b, h, w, d)
    if cfg.fusion == "ffn":
        def ffn(m, x):
            return _dense(m.fc2, F.gelu(torch.from_numpy(_dense(m.fc1, x))).numpy())

        fused = np.concatenate([ffn(dem.fuse_local, l_enh), ffn(dem.fuse_global, g_enh)], -1)
        fused = _layer_norm(dem.fuse_norm, fused + g_enh + l_enh)
    else:
        fused = np.concatenate([_dense(dem.fuse_local, l_enh), _dense(dem.fuse_global, g_enh)], -1)
    nchw = torch.from_numpy(fused).permute(0, 3, 1, 2)
    if cfg.downsample == "bilinear":
        down = F.interpolate(nchw, size=(h, w), mode="bilinear", align_corners=False, antialias=False)
    else:
        down = F.avg_pool2d(nchw, kernel_size=(n_rows, n_cols))
    down = down.permute(0, 2, 3, 1).reshape(b, h * w, d).numpy()
    low = views[:, -1]
    return (low + down) / 2 if cfg.lowres_merge == "mean" else low + down


def _jit_call(dem, views, **grid):
    graphdef, state = nnx.split(dem)
    return jax.jit(lambda s, v: nnx.merge(graphdef, s)(v, **grid))(state, views)


VARIANTS = {
    "code": DEMConfig(attention_impl="xla"),
    "paper": DEMConfig.paper(attention_impl="xla"),
    "paper_pairing_only": DEMConfig(window_pairing="paper", heads=2, attention_impl="xla"),
    "code_unshared_avgpool_sum": DEMConfig(shared_attention=False, downsample="avg_pool", lowres_merge="sum",
                                           heads=4, attention_impl="xla"),
}


@pytest.mark.parametrize("variant,n_rows,n_cols,h,w", [
    ("code", 2, 2, 4, 4), ("code", 3, 3, 2, 3), ("code", 2, 3, 4, 2), ("paper", 2, 2, 4, 4), ("paper", 3, 2, 2, 3),
    ("paper_pairing_only", 2, 3, 4, 2), ("code_unshared_avgpool_sum", 3, 2, 2, 4)])
def test_batched_dem_equals_per_window_loop(variant, n_rows, n_cols, h, w):
    d = 32
    dem = DualPerspectiveEnhancement(VARIANTS[variant], d, rngs=nnx.Rngs(0))
    _randomize(dem, seed=1)
    views = jnp.asarray(np.random.default_rng(2).normal(size=(2, 2 * n_rows * n_cols + 1, h * w, d)), jnp.float32)
    out = _jit_call(dem, views, grid_hw=(h, w), n_rows=n_rows, n_cols=n_cols)
    assert out.shape == (2, h * w, d)
    np.testing.assert_allclose(np.asarray(out), _ref_dem(dem, views, h, w, n_rows, n_cols), **TOL)


def test_paper_and_code_variants_have_the_documented_structure():
    code = DualPerspectiveEnhancement(DEMConfig(), 32, rngs=nnx.Rngs(0))
    paper = DualPerspectiveEnhancement(DEMConfig.paper(), 32, rngs=nnx.Rngs(0))
    assert code.local_attention is None and code.attention.attn.out is not None and code.attention.norm is not None
    assert paper.local_attention is not None and paper.attention.attn.out is None and paper.attention.norm is None
    assert paper.fuse_local.kernel.shape == (32, 16) and paper.fuse_norm is None
    assert code.fuse_local.fc1.kernel.shape == (32, 2) and code.fuse_local.fc2.kernel.shape == (2, 16)


@pytest.mark.parametrize("in_hw,out_hw", [((12, 12), (4, 4)), ((72, 48), (24, 24)), ((10, 7), (4, 3)),
                                          ((3, 5), (7, 9))])
def test_bilinear_resize_matches_torch_interpolate(in_hw, out_hw):
    x = np.random.default_rng(0).normal(size=(2, *in_hw, 5)).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=out_hw, mode="bilinear",
                        align_corners=False, antialias=False).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(np.asarray(bilinear_resize(jnp.asarray(x), out_hw)), ref, **TOL)


@pytest.mark.parametrize("in_hw,out_hw", [((12, 12), (4, 4)), ((8, 9), (4, 3)), ((6, 6), (6, 3))])
def test_average_pool_matches_torch_avg_pool2d(in_hw, out_hw):
    x = np.random.default_rng(1).normal(size=(2, *in_hw, 5)).astype(np.float32)
    kernel = (in_hw[0] // out_hw[0], in_hw[1] // out_hw[1])
    ref = F.avg_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), kernel_size=kernel).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(np.asarray(average_pool(jnp.asarray(x), out_hw)), ref, **TOL)
    with pytest.raises(ValueError, match="divisible"):
        average_pool(jnp.asarray(x), (5, 5))


@pytest.mark.parametrize("kind", ["contiguous", "strided"])
@pytest.mark.parametrize("n_rows,n_cols", [(2, 2), (3, 2), (1, 4)])
def test_window_split_merge_round_trip(kind, n_rows, n_cols):
    h, w, d = 3, 2, 4
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, n_rows * h, n_cols * w, d)), jnp.float32)
    windows = split_windows(x, kind, n_rows, n_cols)
    assert windows.shape == (2 * n_rows * n_cols, h * w, d)
    np.testing.assert_array_equal(merge_windows(windows, kind, n_rows, n_cols, (h, w)), x)
    np.testing.assert_array_equal(split_windows(merge_windows(windows, kind, n_rows, n_cols, (h, w)), kind,
                                                n_rows, n_cols), windows)
    i, j = n_rows - 1, n_cols - 1  # last window = the indexing definition
    np.testing.assert_array_equal(windows[n_rows * n_cols - 1].reshape(h, w, d),
                                  x[_window_slices(kind, i, j, h, w, n_rows, n_cols)][0])
    with pytest.raises(ValueError, match="unknown window kind"):
        split_windows(x, "diagonal", n_rows, n_cols)


@pytest.mark.parametrize("n_rows,n_cols", [(3, 3), (2, 3)])
def test_recombination_inverts_dcm_cropping(n_rows, n_cols):
    """Crop a feature map as DCM crops pixels, lay the crops out in view order, recombine → the map."""
    b, h, w, d = 2, 4, 3, 6
    rng = np.random.default_rng(3)
    fmap = jnp.asarray(rng.normal(size=(b, n_rows * h, n_cols * w, d)), jnp.float32)
    low = jnp.asarray(rng.normal(size=(b, 1, h, w, d)), jnp.float32)
    views = jnp.concatenate([contiguous_crops(fmap, n_rows, n_cols), strided_crops(fmap, n_rows, n_cols), low], 1)
    f_loc, f_glo, low_view = recombine_views(views.reshape(b, -1, h * w, d), (h, w), n_rows, n_cols)
    np.testing.assert_array_equal(f_loc, fmap)
    np.testing.assert_array_equal(f_glo, fmap)
    np.testing.assert_array_equal(low_view, low.reshape(b, h * w, d))


def test_bad_inputs_fail_loudly():
    dem = DualPerspectiveEnhancement(DEMConfig(attention_impl="xla"), 32, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="2\\*2\\*2\\+1"):
        dem(jnp.zeros((1, 8, 16, 32)), grid_hw=(4, 4), n_rows=2, n_cols=2)
    with pytest.raises(ValueError, match="width 32"):
        dem(jnp.zeros((1, 9, 16, 8)), grid_hw=(4, 4), n_rows=2, n_cols=2)
    with pytest.raises(ValueError, match="unknown DEMConfig keys"):
        DEMConfig.from_dict({"heads": 8, "window": "code"})
    with pytest.raises(ValueError, match="fusion"):
        DEMConfig(fusion="conv")
    with pytest.raises(ValueError, match="heads"):
        DualPerspectiveEnhancement(DEMConfig(heads=5), 32, rngs=nnx.Rngs(0))


def _param_count(module) -> int:
    return sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def test_real_preset_shapes_and_parameter_count():
    """D = 1024, 24x24 patches, n = 3 (19 views): 4 x (1024² + 1024) + 2 x 1024 (attention)
    + 2 x (1024·64 + 64 + 64·512 + 512) (FFNs) + 2 x 1024 (ln_fuse) = 4,400,256 parameters (§5.2 ≈ 4.40M)."""
    abstract = nnx.eval_shape(lambda: DualPerspectiveEnhancement(DEMConfig(), 1024, rngs=nnx.Rngs(0)))
    assert _param_count(abstract) == 4_400_256
    graphdef, state = nnx.split(abstract)
    views = jax.ShapeDtypeStruct((2, 19, 576, 1024), jnp.float32)
    out = jax.eval_shape(lambda s, v: nnx.merge(graphdef, s)(v, grid_hw=(24, 24), n_rows=3, n_cols=3), state, views)
    assert out.shape == (2, 576, 1024) and out.dtype == jnp.float32
    fused = jax.eval_shape(lambda s, v: nnx.merge(graphdef, s).enhanced_map(v, grid_hw=(24, 24), n_rows=3, n_cols=3),
                           state, views)
    assert fused.shape == (2, 72, 72, 1024)
    paper = nnx.eval_shape(lambda: DualPerspectiveEnhancement(DEMConfig.paper(), 1024, rngs=nnx.Rngs(0)))
    assert _param_count(paper) == 2 * 3 * (1024 ** 2 + 1024) + 2 * (1024 * 512 + 512)


def test_sharded_jit_matches_unsharded():
    cfg, d, grid = DEMConfig(heads=4, attention_impl="xla"), 32, dict(grid_hw=(4, 4), n_rows=2, n_cols=2)

    def make():
        return DualPerspectiveEnhancement(cfg, d, rngs=nnx.Rngs(0))

    views = jnp.asarray(np.random.default_rng(5).normal(size=(4, 9, 16, d)), jnp.float32)
    expected = _jit_call(make(), views, **grid)
    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    graphdef, state, _ = init_sharded(make, mesh)
    with use_mesh(mesh):
        out = jax.jit(lambda s, v: nnx.merge(graphdef, s)(v, **grid))(state, views)
    np.testing.assert_allclose(np.asarray(out), np.asarray(expected), **TOL)
