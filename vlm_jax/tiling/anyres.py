"""LLaVA-NeXT "anyres" grid choice and resize-and-pad canvas (spec/methods.md §2.2).

Resolutions are ``(height, width)`` as in Hugging Face (the original LLaVA code reads pinpoints as
``(width, height)``; identical for the symmetric released lists).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from vlm_jax.tiling.layout import TileLayout, check_image_size


def best_fit_resolution(height: int, width: int, candidates: Sequence[Sequence[int]]) -> tuple[int, int]:
    """The ``(h, w)`` candidate keeping the most image pixels, ties broken by fewer wasted pixels.

    Effective pixels = ``min(int(W*s) * int(H*s), W*H)`` with ``s = min(w/W, h/H)``; wasted =
    ``w*h - effective``. The first candidate wins exact ties.
    """
    check_image_size(height, width)
    if not candidates:
        raise ValueError("best_fit_resolution needs at least one candidate resolution")
    best, best_effective, best_wasted = (int(candidates[0][0]), int(candidates[0][1])), 0, float("inf")
    for cand_h, cand_w in candidates:
        scale = min(cand_w / width, cand_h / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        wasted = cand_w * cand_h - effective
        if effective > best_effective or (effective == best_effective and wasted < best_wasted):
            best, best_effective, best_wasted = (cand_h, cand_w), effective, wasted
    return best


def fit_within(height: int, width: int, target_h: int, target_w: int) -> tuple[int, int]:
    """Aspect-preserving size ``(h, w)`` filling ``(target_h, target_w)`` on the limiting axis.

    The other axis is ``ceil``-rounded and clipped to the target (HF ``get_patch_output_size``).
    """
    scale_w, scale_h = target_w / width, target_h / height
    if scale_w < scale_h:
        return min(math.ceil(height * scale_w), target_h), target_w
    return target_h, min(math.ceil(width * scale_h), target_w)


def padded_grid_layout(kind: str, height: int, width: int, canvas: tuple[int, int], *, tile: int,
                       global_mode: str = "stretch") -> TileLayout:
    """Layout whose image is fitted into ``canvas`` and centred on black padding; global view first."""
    canvas_h, canvas_w = canvas
    if canvas_h % tile or canvas_w % tile:
        raise ValueError(f"canvas {canvas} is not a multiple of the tile size {tile}")
    new_h, new_w = fit_within(height, width, canvas_h, canvas_w)
    box = ((canvas_h - new_h) // 2, (canvas_w - new_w) // 2, new_h, new_w)
    return TileLayout(kind=kind, rows=canvas_h // tile, cols=canvas_w // tile, tile=tile, global_view="first",
                      orig_size=(height, width), resized_size=(canvas_h, canvas_w), content_box=box,
                      global_mode=global_mode)


def plan_anyres(height: int, width: int, *, pinpoints: Sequence[Sequence[int]], tile: int = 336) -> TileLayout:
    """LLaVA-NeXT layout: best pinpoint ``(h, w)``, image fitted + black centred padding.

    Views (``crop_views``): the plainly resized whole image first, then ``rows*cols`` tiles row-major.
    """
    canvas = best_fit_resolution(height, width, pinpoints)
    return padded_grid_layout("anyres", height, width, canvas, tile=tile)
