"""Stitching slice token maps into one whole-image canvas by grid position, and cutting it back.

HiRes-LLaVA's SliceRestore adapter (spec/methods.md §4.2, "Merge" / "Split") works on the feature
map of the whole high-resolution image, rebuilt from its slices. With static shapes:

- ``x [B, N, h, w, D]``: the ``h × w`` token map of each of the ``N`` (padded) views.
- ``grid int [B, 2]``: ``(rows, cols)`` of each example's slice grid (differs per example).
- ``view_mask bool [B, N]``: valid views (the batch's ``tile_mask``).
- ``first_slice`` (static): index of the first grid slice among the views. Tiling orders
  (vlm_jax/tiling/crop.py): LLaVA-NeXT / UHD / SliME put the global view first → ``1``; InternVL
  puts the grid tiles first and the thumbnail last → ``0``.

View ``n`` of an example is slice ``k = n - first_slice`` iff ``0 <= k < rows·cols`` and the view is
valid; slice ``k`` sits at grid cell ``(k // cols, k % cols)`` (row-major). The canvas has a static
capacity of ``max_rows × max_cols`` cells: ``[B, max_rows·h, max_cols·w, D]``; cell ``(r, c)`` covers
canvas rows ``r·h … r·h+h-1`` and columns ``c·w … c·w+w-1``. Cells outside an example's grid are
zero; views that are not merged slices (global view, thumbnail, padding) never reach the canvas, and
:func:`split_slices` returns zeros for them. Grids must fit the capacity (``rows <= max_rows``,
``cols <= max_cols``); slices of a larger grid that fall outside it are dropped.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _cell_sources(grid: jax.Array, view_mask: jax.Array, *, first_slice: int, max_rows: int,
                  max_cols: int) -> tuple[jax.Array, jax.Array]:
    """Per canvas cell (row-major over ``max_rows × max_cols``): source view ``int [B, R·C]`` and whether
    the cell holds a slice ``bool [B, R·C]``."""
    n = view_mask.shape[1]
    rows, cols = grid[:, 0:1], grid[:, 1:2]
    cell = jnp.arange(max_rows * max_cols)[None, :]
    r, c = cell // max_cols, cell % max_cols
    view = first_slice + r * cols + c
    safe_view = jnp.clip(view, 0, n - 1)
    valid = (r < rows) & (c < cols) & (view < n) & jnp.take_along_axis(view_mask, safe_view, axis=1)
    return safe_view, valid


def _view_cells(grid: jax.Array, view_mask: jax.Array, *, first_slice: int, max_rows: int,
                max_cols: int) -> tuple[jax.Array, jax.Array]:
    """Per view: its canvas cell ``int [B, N]`` (row-major) and whether it is a merged slice ``bool [B, N]``."""
    n = view_mask.shape[1]
    rows, cols = grid[:, 0:1], grid[:, 1:2]
    k = jnp.arange(n)[None, :] - first_slice
    safe_cols = jnp.maximum(cols, 1)
    r, c = k // safe_cols, k % safe_cols
    valid = view_mask & (k >= 0) & (k < rows * cols) & (r < max_rows) & (c < max_cols)
    return jnp.clip(r * max_cols + c, 0, max_rows * max_cols - 1), valid


def _check_static(first_slice: int, max_rows: int, max_cols: int) -> None:
    if first_slice < 0 or max_rows < 1 or max_cols < 1:
        raise ValueError(f"need first_slice >= 0 and max_rows, max_cols >= 1; got first_slice={first_slice}, "
                         f"max_rows={max_rows}, max_cols={max_cols}")


def _check_batch(grid: jax.Array, view_mask: jax.Array, b: int, n: int) -> None:
    if grid.shape != (b, 2) or view_mask.shape != (b, n):
        raise ValueError(f"expected grid [{b}, 2] and view_mask [{b}, {n}], got {grid.shape} and {view_mask.shape}")


def merged_view_mask(grid: jax.Array, view_mask: jax.Array, *, first_slice: int = 0, max_rows: int,
                     max_cols: int) -> jax.Array:
    """``bool [B, N]``: which views are slices placed on the canvas."""
    _check_static(first_slice, max_rows, max_cols)
    return _view_cells(grid, view_mask, first_slice=first_slice, max_rows=max_rows, max_cols=max_cols)[1]


def merge_slices(x: jax.Array, grid: jax.Array, view_mask: jax.Array, *, first_slice: int = 0, max_rows: int,
                 max_cols: int) -> jax.Array:
    """Stitch slices by grid position: ``x [B, N, h, w, D]`` → canvas ``[B, max_rows·h, max_cols·w, D]``
    (zeros outside the example's grid)."""
    _check_static(first_slice, max_rows, max_cols)
    if x.ndim != 5:
        raise ValueError(f"merge_slices expects x [B, N, h, w, D], got shape {x.shape}")
    b, n, h, w, d = x.shape
    _check_batch(grid, view_mask, b, n)
    src, valid = _cell_sources(grid, view_mask, first_slice=first_slice, max_rows=max_rows, max_cols=max_cols)
    tiles = x[jnp.arange(b)[:, None], src]  # [B, R·C, h, w, D]
    tiles = jnp.where(valid[:, :, None, None, None], tiles, jnp.zeros((), x.dtype))
    tiles = tiles.reshape(b, max_rows, max_cols, h, w, d).transpose(0, 1, 3, 2, 4, 5)
    return tiles.reshape(b, max_rows * h, max_cols * w, d)


def split_slices(canvas: jax.Array, grid: jax.Array, view_mask: jax.Array, *, first_slice: int = 0,
                 max_rows: int, max_cols: int) -> jax.Array:
    """Inverse of :func:`merge_slices` on merged slices: canvas ``[B, max_rows·h, max_cols·w, D]`` →
    ``[B, N, h, w, D]`` with ``N = view_mask.shape[1]``; views that are not merged slices get zeros."""
    _check_static(first_slice, max_rows, max_cols)
    if canvas.ndim != 4 or canvas.shape[1] % max_rows or canvas.shape[2] % max_cols:
        raise ValueError(f"split_slices expects a canvas [B, {max_rows}·h, {max_cols}·w, D], got {canvas.shape}")
    b, big_h, big_w, d = canvas.shape
    h, w = big_h // max_rows, big_w // max_cols
    _check_batch(grid, view_mask, b, view_mask.shape[1])
    tiles = canvas.reshape(b, max_rows, h, max_cols, w, d).transpose(0, 1, 3, 2, 4, 5)
    tiles = tiles.reshape(b, max_rows * max_cols, h, w, d)
    cell, valid = _view_cells(grid, view_mask, first_slice=first_slice, max_rows=max_rows, max_cols=max_cols)
    out = tiles[jnp.arange(b)[:, None], cell]
    return jnp.where(valid[:, :, None, None, None], out, jnp.zeros((), canvas.dtype))


def canvas_mask(grid: jax.Array, view_mask: jax.Array, *, slice_hw: tuple[int, int], first_slice: int = 0,
                max_rows: int, max_cols: int) -> jax.Array:
    """``bool [B, max_rows·h, max_cols·w]``: canvas positions covered by a merged slice."""
    _check_static(first_slice, max_rows, max_cols)
    b = grid.shape[0]
    valid = _cell_sources(grid, view_mask, first_slice=first_slice, max_rows=max_rows, max_cols=max_cols)[1]
    valid = valid.reshape(b, max_rows, 1, max_cols, 1)
    h, w = slice_hw
    return jnp.broadcast_to(valid, (b, max_rows, h, max_cols, w)).reshape(b, max_rows * h, max_cols * w)
