"""Resizing learned ViT position embeddings to another patch grid.

Bicubic interpolation on the 2-D grid, CLS row kept apart, with PyTorch's
``F.interpolate(mode="bicubic", align_corners=False)`` conventions (cubic-convolution kernel with
``A = -0.75``, half-pixel centres, border replication, no antialiasing), which is what the HF
CLIP / SigLIP / InternVL ``interpolate_pos_encoding`` paths use. The resize is separable, so it is
written as two small interpolation matrices applied with ``einsum`` (exact for any sizes; the
matrices are static numpy constants).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_A = -0.75  # PyTorch's bicubic coefficient (Keys' kernel uses -0.5)


def _cubic(x: np.ndarray) -> np.ndarray:
    """Cubic-convolution kernel weight at distance ``|x|`` (zero beyond 2)."""
    x = np.abs(x)
    near = ((_A + 2) * x - (_A + 3)) * x * x + 1
    far = ((_A * x - 5 * _A) * x + 8 * _A) * x - 4 * _A
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
    """``[out_size, in_size]`` matrix ``M`` with ``resize(v) = M @ v`` along one axis."""
    scale = in_size / out_size
    src = (np.arange(out_size) + 0.5) * scale - 0.5
    base = np.floor(src)
    frac = src - base
    m = np.zeros((out_size, in_size), np.float64)
    for tap in range(-1, 3):
        idx = np.clip(base + tap, 0, in_size - 1).astype(np.int64)
        np.add.at(m, (np.arange(out_size), idx), _cubic(frac - tap))
    return m


def resize_grid(grid: jax.Array, out_hw: tuple[int, int]) -> jax.Array:
    """Bicubic resize of ``grid [h, w, D]`` to ``[H', W', D]``."""
    h, w, _ = grid.shape
    mh = jnp.asarray(bicubic_matrix(h, out_hw[0]), jnp.float32)
    mw = jnp.asarray(bicubic_matrix(w, out_hw[1]), jnp.float32)
    out = jnp.einsum("Hh,hwd->Hwd", mh, grid.astype(jnp.float32), precision=jax.lax.Precision.HIGHEST)
    out = jnp.einsum("Ww,Hwd->HWd", mw, out, precision=jax.lax.Precision.HIGHEST)
    return out.astype(grid.dtype)


def interpolate_pos_embed(table: jax.Array, src_grid: tuple[int, int], dst_grid: tuple[int, int], *,
                          has_cls: bool) -> jax.Array:
    """Position-embedding table for another patch grid.

    Args:
      table: ``[(1 if has_cls) + gh·gw, D]``; patch rows in row-major (y, x) order.
      src_grid: ``(gh, gw)`` of ``table``; dst_grid: ``(gh', gw')`` wanted.
      has_cls: row 0 is the CLS position, copied unchanged.
    Returns:
      ``[(1 if has_cls) + gh'·gw', D]``; ``table`` itself when the grids are equal.
    """
    n_cls = int(has_cls)
    gh, gw = src_grid
    if table.shape[0] != n_cls + gh * gw:
        raise ValueError(f"position table has {table.shape[0]} rows, expected {n_cls} + {gh}x{gw}")
    if tuple(src_grid) == tuple(dst_grid):
        return table
    patches = resize_grid(table[n_cls:].reshape(gh, gw, -1), dst_grid).reshape(-1, table.shape[-1])
    return jnp.concatenate([table[:n_cls], patches], axis=0)
