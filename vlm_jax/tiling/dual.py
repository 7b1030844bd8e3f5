"""INF-LLaVA dual-perspective cropping (spec/methods.md §5.1 DCM, §5.2, §5.5).

The crop/merge functions are pure reshapes + transposes on the last three axes ``[..., H, W, C]``,
so they work unchanged on numpy and jax.numpy arrays, on pixels and on feature maps (DEM windows).

- contiguous (local perspective): block ``k = i*n_cols + j`` is ``x[i*h:(i+1)*h, j*w:(j+1)*w]``.
- strided (global perspective): phase ``k = i*n_cols + j`` is ``x[i::n_rows, j::n_cols]``.
"""

from __future__ import annotations

import numpy as np

from vlm_jax.tiling.layout import TileLayout, check_image_size
from vlm_jax.tiling.normalize import CLIP_MEAN, mean_colour


def _split_shape(x, n_rows: int, n_cols: int):
    *lead, height, width, channels = x.shape
    if height % n_rows or width % n_cols:
        raise ValueError(f"map [{height}, {width}] is not divisible by the grid {n_rows}x{n_cols}")
    return tuple(lead), height // n_rows, width // n_cols, channels


def contiguous_crops(x, n_rows: int, n_cols: int):
    """``[..., H, W, C] -> [..., n_rows*n_cols, H/n_rows, W/n_cols, C]``, blocks row-major."""
    lead, h, w, c = _split_shape(x, n_rows, n_cols)
    nl = len(lead)
    x = x.reshape(*lead, n_rows, h, n_cols, w, c)
    x = x.transpose(*range(nl), nl, nl + 2, nl + 1, nl + 3, nl + 4)
    return x.reshape(*lead, n_rows * n_cols, h, w, c)


def strided_crops(x, n_rows: int, n_cols: int):
    """``[..., H, W, C] -> [..., n_rows*n_cols, H/n_rows, W/n_cols, C]``;
    crop ``i*n_cols+j`` = ``x[i::n_rows, j::n_cols]``."""
    lead, h, w, c = _split_shape(x, n_rows, n_cols)
    nl = len(lead)
    x = x.reshape(*lead, h, n_rows, w, n_cols, c)
    x = x.transpose(*range(nl), nl + 1, nl + 3, nl, nl + 2, nl + 4)
    return x.reshape(*lead, n_rows * n_cols, h, w, c)


def _merge_shape(crops, n_rows: int, n_cols: int):
    *lead, n, h, w, c = crops.shape
    if n != n_rows * n_cols:
        raise ValueError(f"got {n} crops for a {n_rows}x{n_cols} grid")
    return tuple(lead), h, w, c


def merge_contiguous(crops, n_rows: int, n_cols: int):
    """Inverse of ``contiguous_crops``: ``[..., n_rows*n_cols, h, w, C] -> [..., n_rows*h, n_cols*w, C]``."""
    lead, h, w, c = _merge_shape(crops, n_rows, n_cols)
    nl = len(lead)
    x = crops.reshape(*lead, n_rows, n_cols, h, w, c)
    x = x.transpose(*range(nl), nl, nl + 2, nl + 1, nl + 3, nl + 4)
    return x.reshape(*lead, n_rows * h, n_cols * w, c)


def merge_strided(crops, n_rows: int, n_cols: int):
    """Inverse of ``strided_crops``: phase ``(i, j)`` goes back to rows ``i::n_rows``, cols ``j::n_cols``."""
    lead, h, w, c = _merge_shape(crops, n_rows, n_cols)
    nl = len(lead)
    x = crops.reshape(*lead, n_rows, n_cols, h, w, c)
    x = x.transpose(*range(nl), nl + 2, nl, nl + 3, nl + 1, nl + 4)
    return x.reshape(*lead, h * n_rows, w * n_cols, c)


def square_offsets(height: int, width: int) -> tuple[int, int, int]:
    """``(side, top, left)`` of LLaVA's ``expand2square``: the image is pasted centred (floor) on a square."""
    side = max(height, width)
    return side, (side - height) // 2, (side - width) // 2


def expand_to_square(image: np.ndarray, fill: tuple[int, ...]) -> np.ndarray:
    """``[H, W, 3] uint8 -> [S, S, 3]``, ``S = max(H, W)``, image centred on ``fill`` colour."""
    height, width = image.shape[:2]
    side, top, left = square_offsets(height, width)
    square = np.empty((side, side, image.shape[2]), image.dtype)
    square[...] = np.asarray(fill, image.dtype)
    square[top:top + height, left:left + width] = image
    return square


def plan_dual(height: int, width: int, *, tile: int = 336, n: int = 3,
              pad_value: tuple[int, int, int] = mean_colour(CLIP_MEAN)) -> TileLayout:
    """INF-LLaVA layout ([code], SFT ``image_aspect_ratio=pad``): square-pad with the mean colour,
    resize to ``(n*tile)^2``.

    Views (``crop_views``): ``n^2`` contiguous crops, ``n^2`` strided crops, then the low-res view
    (the padded square resized to ``tile x tile``). [inferred] The official code makes the low-res
    view on device (non-antialiased torch bicubic of the normalised 1008 tensor); here it is a PIL
    bicubic resize on the host. ``content_box`` is the padded square's image area scaled to the
    canvas (rounded).
    """
    check_image_size(height, width)
    side, top, left = square_offsets(height, width)
    canvas = n * tile
    scale = canvas / side
    r0, c0 = round(top * scale), round(left * scale)
    r1, c1 = round((top + height) * scale), round((left + width) * scale)
    box = (r0, c0, max(1, r1 - r0), max(1, c1 - c0))
    return TileLayout(kind="dual", rows=n, cols=n, tile=tile, global_view="last", orig_size=(height, width),
                      resized_size=(canvas, canvas), content_box=box, pad_value=tuple(pad_value))
