"""SliME adaptive slicing: LLaVA-UHD candidate grids + LLaVA-NeXT criterion (spec/methods.md §6.2).

Default is the official code's behaviour ([code] ``select_best_resolution_uhd``); the paper's
"pad and resize" global view is ``global_mode="pad"``.
"""

from __future__ import annotations

import math

from vlm_jax.tiling.anyres import best_fit_resolution, padded_grid_layout
from vlm_jax.tiling.layout import TileLayout, check_image_size


def uhd_candidate_grids(height: int, width: int, *, tile: int = 336, max_slices: int = 6) -> list[tuple[int, int]]:
    """Candidate ``(rows, cols)`` grids, in the order the reference visits them.

    ``k = ceil(W*H / tile^2)`` clamped to ``max_slices``, and ``k == 1`` becomes 2 (1x1 never appears).
    Slice counts ``n`` are ``{k, k+1}`` when ``k <= 2`` else ``{k-1, k, k+1}``; for each ``n``
    (ascending) every factorisation ``cols = 1..n`` with ``rows = n / cols``.
    """
    check_image_size(height, width)
    if max_slices < 2:
        raise ValueError(f"max_slices must be >= 2 (SliME always slices), got {max_slices}")
    k = min(math.ceil(width * height / (tile * tile)), max_slices)
    k = 2 if k == 1 else k
    counts = (k, k + 1) if k <= 2 else (k - 1, k, k + 1)
    return [(n // cols, cols) for n in counts for cols in range(1, n + 1) if n % cols == 0]


def plan_uhd(height: int, width: int, *, tile: int = 336, max_slices: int = 6,
             global_mode: str = "stretch") -> TileLayout:
    """SliME layout: best candidate grid, image fitted + black centred padding, global view first.

    ``global_mode="stretch"`` (code) resizes the whole image to ``tile x tile``; ``"pad"`` (paper)
    pads it to a centred black square first.
    """
    grids = uhd_candidate_grids(height, width, tile=tile, max_slices=max_slices)
    canvas = best_fit_resolution(height, width, [(rows * tile, cols * tile) for rows, cols in grids])
    return padded_grid_layout("uhd", height, width, canvas, tile=tile, global_mode=global_mode)
