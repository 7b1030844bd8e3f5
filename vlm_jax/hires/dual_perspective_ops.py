"""Parameter-free parts of INF-LLaVA's DEM (spec/methods.md §5.1, §5.2, §5.5): view recombination,
window split/merge, and the two down-sampling operators.

All windowing is the pixel cropping of :mod:`vlm_jax.tiling.dual` applied to feature maps
``[B, H, W, D]`` (pure reshapes + transposes), with the window axis folded into the batch so that one
attention call covers every window: ``[B, H, W, D] -> [B·n_rows·n_cols, h·w, D]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vlm_jax.tiling.dual import contiguous_crops, merge_contiguous, merge_strided, strided_crops

WINDOWINGS = {
    "contiguous": (contiguous_crops, merge_contiguous),  # local perspective, block k = rows i*h:(i+1)*h
    "strided": (strided_crops, merge_strided),  # global perspective, phase k = rows i::n_rows
}


def _windowing(kind: str):
    try:
        return WINDOWINGS[kind]
    except KeyError:
        raise ValueError(f"unknown window kind {kind!r}; known: {sorted(WINDOWINGS)}") from None


def split_windows(x: jax.Array, kind: str, n_rows: int, n_cols: int) -> jax.Array:
    """``x [B, n_rows·h, n_cols·w, D] -> [B·n_rows·n_cols, h·w, D]`` (windows of one example adjacent,
    in the crop order of ``kind``: row-major blocks or phase-major strided sub-maps)."""
    split, _ = _windowing(kind)
    crops = split(x, n_rows, n_cols)  # [B, n, h, w, D]
    b, n, h, w, d = crops.shape
    return crops.reshape(b * n, h * w, d)


def merge_windows(windows: jax.Array, kind: str, n_rows: int, n_cols: int, window_hw: tuple[int, int]) -> jax.Array:
    """Inverse of :func:`split_windows`: ``[B·n_rows·n_cols, h·w, D] -> [B, n_rows·h, n_cols·w, D]``."""
    _, merge = _windowing(kind)
    n = n_rows * n_cols
    bn, p, d = windows.shape
    h, w = window_hw
    if bn % n or p != h * w:
        raise ValueError(f"windows {windows.shape} do not fit a {n_rows}x{n_cols} grid of {h}x{w} windows")
    return merge(windows.reshape(bn // n, n, h, w, d), n_rows, n_cols)


def recombine_views(views: jax.Array, grid_hw: tuple[int, int], n_rows: int,
                    n_cols: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Split DCM-ordered ViT features into the two recombined maps and the low-res view (§5.1 DCM).

    Args:
      views: ``[B, 2·n_rows·n_cols + 1, P, D]``, ``P = h·w``: the contiguous crops row-major, then
        the strided crops phase-major (phase ``(i, j)`` at ``i·n_cols + j``), then the low-res view.
      grid_hw: ``(h, w)`` patch grid of one view.
    Returns:
      ``F_loc [B, n_rows·h, n_cols·w, D]`` (blocks tiled in place), ``F_glo`` (same shape; phase
      ``(i, j)`` scattered to rows ``i::n_rows``, cols ``j::n_cols``) and the low-res view ``[B, P, D]``.
    """
    n = n_rows * n_cols
    h, w = grid_hw
    if views.ndim != 4 or views.shape[1] != 2 * n + 1 or views.shape[2] != h * w:
        raise ValueError(f"views {views.shape} must be [B, 2*{n_rows}*{n_cols}+1 = {2 * n + 1}, "
                         f"{h}*{w} = {h * w}, D] for a {n_rows}x{n_cols} grid of {h}x{w} patch maps")
    b, _, _, d = views.shape
    local = views[:, :n].reshape(b, n, h, w, d)
    glob = views[:, n:2 * n].reshape(b, n, h, w, d)
    return merge_contiguous(local, n_rows, n_cols), merge_strided(glob, n_rows, n_cols), views[:, 2 * n]


def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """``[out, in]`` weights of 1-D linear interpolation with half-pixel centres, matching
    ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False, antialias=False)`` when
    the output size is given: source ``s = max(0, (o + 0.5)·in/out - 0.5)``, taps ``floor(s)`` and
    ``min(floor(s) + 1, in - 1)``."""
    src = np.maximum((np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5, 0.0)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = src - lo
    m = np.zeros((out_size, in_size), np.float64)
    rows = np.arange(out_size)
    np.add.at(m, (rows, lo), 1.0 - frac)
    np.add.at(m, (rows, hi), frac)
    return m


def bilinear_resize(x: jax.Array, out_hw: tuple[int, int]) -> jax.Array:
    """``[B, H, W, D] -> [B, h, w, D]`` bilinear, align_corners=False, no antialias ([code] §5.2 step 6).

    Computed in float32 as the official code does, then cast back to ``x.dtype``. For ``H = 3h``
    this samples the centre row/column of each 3-wide block (a point-sample, not an average).
    """
    _, height, width, _ = x.shape
    mh = jnp.asarray(bilinear_matrix(height, out_hw[0]), jnp.float32)
    mw = jnp.asarray(bilinear_matrix(width, out_hw[1]), jnp.float32)
    hi = jax.lax.Precision.HIGHEST
    y = jnp.einsum("oh,bhwd->bowd", mh, x.astype(jnp.float32), precision=hi)
    y = jnp.einsum("pw,bowd->bopd", mw, y, precision=hi)
    return y.astype(x.dtype)


def average_pool(x: jax.Array, out_hw: tuple[int, int]) -> jax.Array:
    """``[B, H, W, D] -> [B, h, w, D]`` mean over non-overlapping ``(H/h) x (W/w)`` blocks ([paper] §5.1
    "Pool"; equals ``torch.nn.functional.avg_pool2d`` with kernel = stride = the block)."""
    b, height, width, d = x.shape
    h, w = out_hw
    if height % h or width % w:
        raise ValueError(f"average pooling needs {height}x{width} divisible by {h}x{w}")
    blocks = x.astype(jnp.float32).reshape(b, h, height // h, w, width // w, d)
    return blocks.mean(axis=(2, 4)).astype(x.dtype)
