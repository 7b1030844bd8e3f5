"""LLaVA-NeXT anyres token geometry (spec/methods.md §2.2 step 3): pure integer functions that work on Python
ints on the host and elementwise on numpy / jnp arrays on device (:func:`vlm_jax.hires.merge.anyres_tokens`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def anyres_geometry(grid_rows, grid_cols, orig_h, orig_w, side: int):
    """Unpadded feature-map geometry of LLaVA-NeXT (spec/methods.md §2.2 step 3; HF ``unpad_image``).

    Works elementwise on Python ints, numpy or jnp integer arrays. The grid map is
    ``(rows·side) × (cols·side)``; returns ``(kept_rows, kept_cols, row_offset, col_offset)``. Integer
    cross-multiplication reproduces HF's float comparisons exactly for all realistic sizes.
    """
    cur_h, cur_w = grid_rows * side, grid_cols * side
    wider = orig_w * cur_h > cur_w * orig_h  # original aspect ratio > current aspect ratio
    pad_h = (cur_h - (orig_h * cur_w) // orig_w) // 2
    pad_w = (cur_w - (orig_w * cur_h) // orig_h) // 2
    if isinstance(wider, (bool, np.bool_)):
        return (cur_h - 2 * pad_h, cur_w, pad_h, 0) if wider else (cur_h, cur_w - 2 * pad_w, 0, pad_w)
    where = jnp.where if isinstance(wider, jax.Array) else np.where
    zero = 0 * cur_h
    return (where(wider, cur_h - 2 * pad_h, cur_h), where(wider, cur_w, cur_w - 2 * pad_w),
            where(wider, pad_h, zero), where(wider, zero, pad_w))


def anyres_num_tokens(grid_rows: int, grid_cols: int, orig_h: int, orig_w: int, side: int,
                      newline: bool = True) -> int:
    """Visual tokens of one LLaVA-NeXT image: ``side²`` base tokens + unpadded grid (+ a newline per row)."""
    rows, cols, _, _ = anyres_geometry(grid_rows, grid_cols, orig_h, orig_w, side)
    return int(side * side + rows * (cols + int(newline)))


def anyres_capacity(max_views: int, side: int) -> int:
    """Static token capacity for any grid with at most ``max_views - 1`` tiles (one view is the base)."""
    best = 0
    for r in range(1, max_views):
        c = (max_views - 1) // r
        best = max(best, r * side * (c * side + 1))
    return side * side + best
