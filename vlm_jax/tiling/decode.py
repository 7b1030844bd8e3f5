"""Safe image decoding: encoded bytes -> ``[H, W, 3] uint8`` RGB, or ``ImageError``.

Every failure (unknown format, truncated or corrupt data — including a PNG missing only its
final chunks, found by ``verify`` — zero size, too many pixels, malformed EXIF) raises ``ImageError``
with a message naming the cause; PIL's own exceptions never escape.

Conversions:
  - EXIF orientation is applied first (the array is upright).
  - Transparency (RGBA, LA, PA, RGBa, La, P or L/RGB with a ``transparency`` key) is composited
    onto ``background`` — white by default, as Hugging Face's ``convert_to_rgb`` does; pass
    ``(0, 0, 0)`` for black.
  - 16/32-bit integer grey (``I;16*``, ``I``) is mapped linearly from ``[0, 65535]`` to
    ``[0, 255]`` (values clipped); float grey (``F``) is clipped to ``[0, 255]``.
  - Everything else (``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``) uses PIL's ``convert("RGB")``.
  - Animated / multi-frame files give their first frame.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

DEFAULT_MAX_PIXELS = 64_000_000


class ImageError(ValueError):
    """An image could not be decoded safely."""


def _check_size(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"image has zero size ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(f"image has {width}x{height} = {width * height} pixels, more than max_pixels={max_pixels} "
                         f"(possible decompression bomb)")


def _has_transparency(image: Image.Image) -> bool:
    return "A" in image.getbands() or "a" in image.getbands() or "transparency" in image.info


def _to_rgb(image: Image.Image, background: tuple[int, int, int]) -> np.ndarray:
    """Any PIL mode -> ``[H, W, 3] uint8`` (see the module docstring for the rules)."""
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image).astype(np.float64)
        if image.mode != "F":
            values = values * (255.0 / 65535.0)
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if _has_transparency(image):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return np.asarray(Image.alpha_composite(canvas, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


def load_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Decode ``data`` (any PIL-readable format) to an upright RGB ``[H, W, 3] uint8`` array.

    ``max_pixels`` bounds ``H*W`` and is checked from the header, before any pixel is decoded.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageError(f"load_image expects encoded bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ImageError("image data is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # max_pixels replaces PIL's global MAX_IMAGE_PIXELS warning; its hard error still surfaces below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                _check_size(image, max_pixels)
                image.verify()  # chunk CRCs and end marker: PIL's decoder alone accepts a PNG missing its tail
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                return _to_rgb(ImageOps.exif_transpose(image), background)
    except ImageError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageError(f"image exceeds PIL's decompression-bomb limit: {err}") from err
    except Image.UnidentifiedImageError as err:
        raise ImageError(f"unrecognised or corrupt image data ({len(data)} bytes)") from err
    except Exception as err:  # noqa: BLE001 -- any decoder failure becomes one clear error type
        raise ImageError(f"could not decode image ({len(data)} bytes): {type(err).__name__}: {err}") from err
