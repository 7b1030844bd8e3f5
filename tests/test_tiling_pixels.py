"""Pixel parity of ``crop_views`` + ``normalize`` with Hugging Face's PIL image processors.

References: ``GotOcr2ImageProcessorPil(crop_to_patches=True)`` (InternVL tiling) and
``LlavaNextImageProcessorPil`` (LLaVA-NeXT anyres; with a single pinpoint equal to the SliME/UHD
canvas it is also the reference for the UHD resize-pad-crop pipeline). Tolerance 1e-5 (float32).
"""

import numpy as np
import pytest
from PIL import Image
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

from vlm_jax.tiling import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    crop_views,
    normalize,
    pad_views,
    plan_anyres,
    plan_fixed,
    plan_internvl,
    plan_uhd,
)

ATOL = 1e-5


def _image(rng, height, width):
    """Smooth gradients plus noise, so resize filters matter."""
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / max(width, 1), yy * 255 / max(height, 1), (xx + yy) % 256], axis=-1)
    return np.clip(base + rng.integers(-40, 40, size=(height, width, 3)), 0, 255).astype(np.uint8)


def _ours_nchw(image, layout, mean, std):
    return normalize(crop_views(image, layout), mean, std).transpose(0, 3, 1, 2)


SMALL_SIZES = [(5, 7), (20, 20), (31, 64), (64, 31), (1, 40), (40, 1), (100, 30), (30, 100), (97, 211),
               (211, 97), (150, 150), (13, 300), (256, 192)]


@pytest.mark.parametrize("tile,max_tiles,sizes", [
    (32, 12, SMALL_SIZES),
    (48, 6, SMALL_SIZES[::2]),
    (448, 12, [(300, 200), (700, 1000), (460, 1400)]),
])
def test_internvl_views_match_got_ocr2_processor(tile, max_tiles, sizes):
    rng = np.random.default_rng(tile)
    processor = GotOcr2ImageProcessorPil(size={"height": tile, "width": tile}, crop_to_patches=True, min_patches=1,
                                         max_patches=max_tiles, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)
    for height, width in sizes:
        image = _image(rng, height, width)
        expected = processor(Image.fromarray(image), return_tensors="np")["pixel_values"]
        ours = _ours_nchw(image, plan_internvl(height, width, tile=tile, max_tiles=max_tiles),
                          IMAGENET_MEAN, IMAGENET_STD)
        assert ours.shape == expected.shape, (height, width)
        np.testing.assert_allclose(ours, expected, atol=ATOL, rtol=0, err_msg=str((height, width)))


def _llava_next_processor(tile, pinpoints):
    return LlavaNextImageProcessorPil(size={"shortest_edge": tile}, crop_size={"height": tile, "width": tile},
                                      image_grid_pinpoints=pinpoints, image_mean=CLIP_MEAN, image_std=CLIP_STD)


@pytest.mark.parametrize("tile,sizes", [
    (32, SMALL_SIZES),
    (336, [(200, 300), (500, 700), (900, 300)]),
])
def test_anyres_views_match_llava_next_processor(tile, sizes):
    rng = np.random.default_rng(tile)
    pinpoints = [[tile * r, tile * c] for r, c in ((1, 2), (2, 1), (2, 2), (3, 1), (1, 3))]
    processor = _llava_next_processor(tile, pinpoints)
    for height, width in sizes:
        image = _image(rng, height, width)
        expected = processor(Image.fromarray(image), return_tensors="np")["pixel_values"][0]
        ours = _ours_nchw(image, plan_anyres(height, width, pinpoints=pinpoints, tile=tile), CLIP_MEAN, CLIP_STD)
        assert ours.shape == expected.shape, (height, width)
        np.testing.assert_allclose(ours, expected, atol=ATOL, rtol=0, err_msg=str((height, width)))


def test_uhd_views_match_llava_next_pipeline_on_the_chosen_canvas():
    """SliME's resize_and_pad + divide + plain-resized global first = LLaVA-NeXT with that one pinpoint."""
    rng = np.random.default_rng(3)
    tile = 32
    for height, width in SMALL_SIZES + [(32, 32), (33, 200), (200, 33)]:
        image = _image(rng, height, width)
        layout = plan_uhd(height, width, tile=tile)
        processor = _llava_next_processor(tile, [list(layout.resized_size)])
        expected = processor(Image.fromarray(image), return_tensors="np")["pixel_values"][0]
        ours = _ours_nchw(image, layout, CLIP_MEAN, CLIP_STD)
        np.testing.assert_allclose(ours, expected, atol=ATOL, rtol=0, err_msg=str((height, width)))


def test_uhd_padded_global_view_is_black_square_then_resize():
    image = _image(np.random.default_rng(4), 20, 60)
    layout = plan_uhd(20, 60, tile=32, global_mode="pad")
    square = Image.new("RGB", (60, 60), (0, 0, 0))
    square.paste(Image.fromarray(image), (0, 20))
    expected = np.asarray(square.resize((32, 32), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(crop_views(image, layout)[0], expected)


def test_fixed_grid_views_are_pil_crops_of_the_stretched_image():
    image = _image(np.random.default_rng(5), 50, 90)
    views = crop_views(image, plan_fixed(50, 90, n_rows=2, n_cols=3, tile=16, global_view="last"))
    stretched = Image.fromarray(image).resize((48, 32), Image.Resampling.BICUBIC)
    boxes = [(16 * c, 16 * r, 16 * c + 16, 16 * r + 16) for r in range(2) for c in range(3)]
    expected = [np.asarray(stretched.crop(b)) for b in boxes]
    expected.append(np.asarray(Image.fromarray(image).resize((16, 16), Image.Resampling.BICUBIC)))
    np.testing.assert_array_equal(views, np.stack(expected))


def test_normalize_matches_processor_without_resizing():
    image = _image(np.random.default_rng(6), 32, 32)
    processor = GotOcr2ImageProcessorPil(size={"height": 32, "width": 32}, image_mean=IMAGENET_MEAN,
                                         image_std=IMAGENET_STD)
    expected = processor(Image.fromarray(image), return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)
    ours = normalize(image, IMAGENET_MEAN, IMAGENET_STD)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, atol=ATOL, rtol=0)


def test_pad_views_and_errors():
    views = np.arange(3 * 2 * 2 * 3, dtype=np.uint8).reshape(3, 2, 2, 3) + 1
    padded, mask = pad_views(views, 5)
    assert padded.shape == (5, 2, 2, 3) and padded.dtype == np.uint8
    np.testing.assert_array_equal(mask, [True, True, True, False, False])
    np.testing.assert_array_equal(padded[:3], views)
    assert not padded[3:].any()
    with pytest.raises(ValueError, match="n_max=2"):
        pad_views(views, 2)
    with pytest.raises(ValueError, match="orig_size"):
        crop_views(np.zeros((10, 10, 3), np.uint8), plan_internvl(10, 11))
    with pytest.raises(ValueError, match="uint8"):
        crop_views(np.zeros((10, 10, 3), np.float32), plan_internvl(10, 10))
    with pytest.raises(ValueError, match="uint8"):
        normalize(np.zeros((2, 2, 3), np.float32), CLIP_MEAN, CLIP_STD)
