"""InternVL2 dynamic aspect-ratio tiling (spec/methods.md §2.1; HF ``get_optimal_tiled_canvas``)."""

from __future__ import annotations

from vlm_jax.tiling.layout import TileLayout, check_image_size


def internvl_candidate_grids(min_tiles: int, max_tiles: int) -> list[tuple[int, int]]:
    """All ``(cols, rows)`` with ``min_tiles <= cols*rows <= max_tiles``, by tile count then cols."""
    if not 1 <= min_tiles <= max_tiles:
        raise ValueError(f"need 1 <= min_tiles <= max_tiles, got min_tiles={min_tiles}, max_tiles={max_tiles}")
    grids = [(c, r) for c in range(1, max_tiles + 1) for r in range(1, max_tiles + 1)
             if min_tiles <= c * r <= max_tiles]
    return sorted(grids, key=lambda g: (g[0] * g[1], g[0]))


def internvl_grid(height: int, width: int, *, tile: int = 448, min_tiles: int = 1,
                  max_tiles: int = 12) -> tuple[int, int]:
    """``(rows, cols)`` whose aspect ratio ``cols/rows`` is closest to ``width/height``.

    Candidates are visited by increasing tile count; on an exact tie in ratio distance the later
    (bigger) grid wins only while the image area exceeds half the bigger grid's pixel area.
    """
    check_image_size(height, width)
    aspect, area = width / height, width * height
    best, best_diff = (1, 1), float("inf")
    for cols, rows in internvl_candidate_grids(min_tiles, max_tiles):
        diff = abs(aspect - cols / rows)
        if diff < best_diff or (diff == best_diff and area > 0.5 * tile * tile * cols * rows):
            best, best_diff = (rows, cols), diff
    return best


def plan_internvl(height: int, width: int, *, tile: int = 448, min_tiles: int = 1, max_tiles: int = 12,
                  thumbnail: bool = True) -> TileLayout:
    """Layout of InternVL2 tiling: the image is stretched (no padding) to ``(rows*tile, cols*tile)``.

    Views (``crop_views``): tiles row-major, then the ``tile x tile`` thumbnail last, which is only
    added when ``thumbnail`` and the grid has more than one tile.
    """
    rows, cols = internvl_grid(height, width, tile=tile, min_tiles=min_tiles, max_tiles=max_tiles)
    canvas = (rows * tile, cols * tile)
    global_view = "last" if thumbnail and rows * cols > 1 else "none"
    return TileLayout(kind="internvl", rows=rows, cols=cols, tile=tile, global_view=global_view,
                      orig_size=(height, width), resized_size=canvas, content_box=(0, 0, *canvas))
