"""``crop_views``: turn a ``TileLayout`` into uint8 pixel views, in each reference's order.

All resizes are PIL ``BICUBIC`` on uint8 RGB, as in Hugging Face's PIL image processors, so the
views are bit-exact with ``GotOcr2ImageProcessorPil(crop_to_patches=True)`` (InternVL) and
``LlavaNextImageProcessorPil`` (anyres) before normalisation.

View order per ``layout.kind``:
  internvl, fixed: ``rows*cols`` tiles row-major, global view (thumbnail) where ``global_view`` says.
  anyres, uhd: global view first, then the tiles of the black-padded canvas row-major.
  dual: ``n^2`` contiguous crops, ``n^2`` strided crops, low-res view last (spec/methods.md §5.2).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from vlm_jax.tiling.dual import contiguous_crops, expand_to_square, strided_crops
from vlm_jax.tiling.layout import TileLayout


def resize_bicubic(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """PIL bicubic (antialiased) resize of ``[H, W, 3] uint8`` to ``[height, width, 3] uint8``."""
    return np.asarray(Image.fromarray(image).resize((width, height), resample=Image.Resampling.BICUBIC))


def _canvas(image: np.ndarray, layout: TileLayout) -> np.ndarray:
    """The ``resized_size`` canvas: image resized into ``content_box``, the rest ``pad_value``."""
    top, left, height, width = layout.content_box
    canvas = np.empty((*layout.resized_size, 3), np.uint8)
    canvas[...] = np.asarray(layout.pad_value, np.uint8)
    canvas[top:top + height, left:left + width] = resize_bicubic(image, height, width)
    return canvas


def _global_view(image: np.ndarray, layout: TileLayout) -> np.ndarray:
    """The whole image as one ``[tile, tile, 3]`` view (stretched, or padded to a square first)."""
    if layout.global_mode == "pad":
        image = expand_to_square(image, layout.pad_value)
    return resize_bicubic(image, layout.tile, layout.tile)


def crop_views(image: np.ndarray, layout: TileLayout) -> np.ndarray:
    """``image [H, W, 3] uint8`` (``(H, W) == layout.orig_size``) -> ``[layout.num_views, tile, tile, 3] uint8``."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"crop_views expects an RGB uint8 image [H, W, 3], got {image.dtype} {image.shape}")
    if image.shape[:2] != tuple(layout.orig_size):
        raise ValueError(f"image size {image.shape[:2]} does not match the layout's orig_size {layout.orig_size}")
    if layout.kind == "dual":
        square = expand_to_square(image, layout.pad_value)
        canvas = resize_bicubic(square, *layout.resized_size)
        lowres = resize_bicubic(square, layout.tile, layout.tile)
        views = [contiguous_crops(canvas, layout.rows, layout.cols),
                 strided_crops(canvas, layout.rows, layout.cols), lowres[None]]
        return np.concatenate(views)
    tiles = contiguous_crops(_canvas(image, layout), layout.rows, layout.cols)
    if layout.global_view == "none":
        return tiles
    whole = _global_view(image, layout)[None]
    return np.concatenate([whole, tiles] if layout.global_view == "first" else [tiles, whole])
