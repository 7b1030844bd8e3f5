"""Safe decoding: every PIL mode converts to RGB uint8; bad data raises ``ImageError``.

Transparency references: HF ``transformers.image_transforms.convert_to_rgb`` (composite on white).
"""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from transformers.image_transforms import convert_to_rgb

from vlm_jax.tiling import ImageError, load_image


def _encode(image, fmt="PNG", **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _rgba(height=5, width=7):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(height, width, 4), dtype=np.uint8)


def _png_with_header(width, height, color_type=2):
    """A syntactically valid PNG whose IHDR claims ``width x height`` (tiny IDAT; decoding would fail)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4)) + chunk(b"IEND", b"")


def test_rgb_roundtrip_exact():
    rgb = _rgba()[..., :3]
    out = load_image(_encode(Image.fromarray(rgb)))
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_modes_composite_on_white_like_hf(mode):
    image = Image.fromarray(_rgba()).convert(mode)
    out = load_image(_encode(image))
    np.testing.assert_array_equal(out, convert_to_rgb(image, return_numpy=True))


def test_alpha_on_black_background():
    rgba = _rgba()
    out = load_image(_encode(Image.fromarray(rgba)), background=(0, 0, 0)).astype(int)
    expected = rgba[..., :3].astype(int) * rgba[..., 3:].astype(int) / 255
    assert np.abs(out - expected).max() <= 1


def test_palette_with_transparency_like_hf():
    palette_image = Image.fromarray(_rgba()[..., :3]).quantize(colors=8)
    palette_image.info["transparency"] = 0
    data = _encode(palette_image, transparency=0)
    decoded = Image.open(io.BytesIO(data))
    assert decoded.mode == "P" and "transparency" in decoded.info
    out = load_image(data)
    np.testing.assert_array_equal(out, convert_to_rgb(decoded, return_numpy=True))
    assert (out[np.asarray(decoded) == 0] == 255).all()  # the transparent index became white


def test_palette_without_transparency_and_grey_modes():
    rgb = _rgba()[..., :3]
    palette_image = Image.fromarray(rgb).quantize(colors=16)
    np.testing.assert_array_equal(load_image(_encode(palette_image)), np.asarray(palette_image.convert("RGB")))
    grey = Image.fromarray(rgb).convert("L")
    np.testing.assert_array_equal(load_image(_encode(grey)), np.repeat(np.asarray(grey)[..., None], 3, axis=2))
    bilevel = Image.fromarray(rgb).convert("1")
    assert set(np.unique(load_image(_encode(bilevel)))) <= {0, 255}


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk(fmt):
    cmyk = Image.fromarray(_rgba()).convert("RGB").convert("CMYK")
    data = _encode(cmyk, fmt)
    reference = Image.open(io.BytesIO(data))
    assert reference.mode == "CMYK"
    np.testing.assert_array_equal(load_image(data), np.asarray(reference.convert("RGB")))


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_sixteen_bit_grey_scaled_not_clipped(fmt):
    values = np.array([[0, 257, 1000], [32768, 65280, 65535]], np.uint16)
    data = _encode(Image.fromarray(values), fmt)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = load_image(data)
    expected = np.rint(values / 257.0).astype(np.uint8)  # 65535 -> 255, 257 -> 1
    np.testing.assert_array_equal(out, np.repeat(expected[..., None], 3, axis=2))


def test_exif_orientation_is_applied():
    rgb = _rgba(2, 3)[..., :3]
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    out = load_image(_encode(Image.fromarray(rgb), exif=exif))
    np.testing.assert_array_equal(out, np.rot90(rgb, k=-1))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files_raise(fmt):
    data = _encode(Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), np.uint8)), fmt)
    for cut in (len(data) // 2, len(data) - 20, len(data) - 8, 30):
        with pytest.raises(ImageError):
            load_image(data[:cut])


def test_empty_garbage_and_wrong_type_raise():
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageError, match="unrecognised"):
        load_image(b"definitely not an image")
    with pytest.raises(ImageError, match="bytes"):
        load_image("image.png")


def test_zero_size_header_raises():
    with pytest.raises(ImageError):
        load_image(_png_with_header(0, 10))


def test_pixel_limit_rejects_before_decoding():
    data = _encode(Image.new("RGB", (2000, 1000)))
    with pytest.raises(ImageError, match="max_pixels=1000000"):
        load_image(data, max_pixels=1_000_000)
    assert load_image(data, max_pixels=2_000_000).shape == (1000, 2000, 3)
    # A header claiming 20000x20000 (400 Mpx) with almost no data: rejected from the header alone.
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(_png_with_header(20000, 20000))
    # Above PIL's own hard limit too: still our error type.
    with pytest.raises(ImageError, match="decompression-bomb"):
        load_image(_png_with_header(20000, 20000), max_pixels=10**12)


def test_random_corruption_never_leaks_pil_errors():
    rng = np.random.default_rng(2)
    for fmt in ("PNG", "JPEG", "GIF", "TIFF"):
        data = bytearray(_encode(Image.fromarray(rng.integers(0, 256, (24, 24, 3), np.uint8)), fmt))
        for _ in range(40):
            corrupt = bytearray(data)
            for pos in rng.integers(0, len(corrupt), size=4):
                corrupt[pos] = int(rng.integers(0, 256))
            try:
                out = load_image(bytes(corrupt), max_pixels=10_000)
            except ImageError:
                continue
            assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
