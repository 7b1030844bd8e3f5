"""Grid planners vs Hugging Face's reference functions (spec/parity.md §2.1).

InternVL: ``got_ocr2.image_processing_pil_got_ocr2.get_optimal_tiled_canvas`` (returns (cols, rows)).
LLaVA-NeXT: ``image_processing_utils.select_best_resolution`` / ``get_patch_output_size`` and
``modeling_llava_next.get_anyres_image_grid_shape`` / ``image_size_to_num_patches`` / ``unpad_image``.
"""

import numpy as np
import pytest
import torch
from transformers.image_processing_utils import get_patch_output_size, select_best_resolution
from transformers.image_utils import ChannelDimension
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil
from transformers.models.llava_next.modeling_llava_next import (
    get_anyres_image_grid_shape,
    image_size_to_num_patches,
    unpad_image,
)

from vlm_jax.tiling import TileLayout, plan_anyres, plan_internvl

LLAVA_16_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
ASYMMETRIC_PINPOINTS = [[336, 1008], [672, 336], [1008, 672], [336, 1344], [1344, 1344]]


def _sizes(seed, count, low=1, high=6000):
    """Random (H, W) log-uniform in [low, high], plus strips, tiny images, squares and exact ratios."""
    rng = np.random.default_rng(seed)
    sizes = np.exp(rng.uniform(np.log(low), np.log(high), size=(count, 2))).astype(int)
    special = [(1, 1), (1, 2), (2, 1), (1, 5000), (5000, 1), (3, 900), (900, 3), (17, 13), (448, 448),
               (447, 449), (896, 448), (448, 896), (1344, 1792), (1500, 2000)]
    squares = [(s, s) for s in (10, 100, 224, 300, 317, 318, 500, 633, 634, 900, 1000, 1500, 3000)]
    # exact ties found by search: the area rule (``>`` not ``>=``) decides at 448/224/64 px tiles;
    # HF's unpad rounds ``round(x, 7)`` before ``int`` for the last group.
    ties = [(882, 1024), (896, 1008), (1008, 896), (588, 2048), (640, 3136), (3136, 640), (128, 144), (144, 128),
            (441, 512), (448, 504), (504, 448), (294, 1024), (400, 500),
            (44, 55), (47, 94), (47, 376), (88, 55), (94, 94), (94, 376), (110, 352), (147, 49), (147, 196)]
    shapes = ((1, 2), (2, 1), (2, 3), (3, 2), (1, 3), (3, 4))
    ratios = [(k * a, k * b) for a, b in shapes for k in (50, 150, 224, 400, 700)]
    return [tuple(map(int, s)) for s in sizes] + special + squares + ties + ratios


@pytest.mark.parametrize("max_tiles", [6, 12, 24])
def test_internvl_grid_matches_hf(max_tiles):
    for height, width in _sizes(max_tiles, 1500):
        cols, rows = get_optimal_tiled_canvas((height, width), (448, 448), 1, max_tiles)
        layout = plan_internvl(height, width, max_tiles=max_tiles)
        assert (layout.rows, layout.cols) == (rows, cols), (height, width, max_tiles)
        assert layout.resized_size == (448 * rows, 448 * cols)
        assert layout.global_view == ("last" if rows * cols > 1 else "none")
        assert layout.num_views == rows * cols + (rows * cols > 1)


@pytest.mark.parametrize("min_tiles,max_tiles,tile", [(2, 6, 448), (1, 40, 448), (1, 12, 224), (3, 9, 64), (2, 2, 448)])
def test_internvl_grid_other_limits_match_hf(min_tiles, max_tiles, tile):
    for height, width in _sizes(min_tiles * 100 + max_tiles, 500):
        cols, rows = get_optimal_tiled_canvas((height, width), (tile, tile), min_tiles, max_tiles)
        layout = plan_internvl(height, width, tile=tile, min_tiles=min_tiles, max_tiles=max_tiles)
        assert (layout.rows, layout.cols) == (rows, cols), (height, width)


@pytest.mark.parametrize("pinpoints", [LLAVA_16_PINPOINTS, ASYMMETRIC_PINPOINTS])
def test_anyres_grid_matches_hf(pinpoints):
    for height, width in _sizes(7, 1500):
        best = select_best_resolution((height, width), pinpoints)
        layout = plan_anyres(height, width, pinpoints=pinpoints)
        assert layout.resized_size == tuple(best), (height, width)
        assert (layout.rows, layout.cols) == get_anyres_image_grid_shape((height, width), pinpoints, 336)
        assert layout.num_views == image_size_to_num_patches((height, width), pinpoints, 336)
        assert layout.global_view == "first"


def test_anyres_content_box_matches_hf_resize_and_pad():
    padding_of = LlavaNextImageProcessorPil()._get_padding_size
    for height, width in _sizes(11, 1000):
        layout = plan_anyres(height, width, pinpoints=LLAVA_16_PINPOINTS)
        image_chw = np.broadcast_to(np.zeros(1, np.uint8), (3, height, width))  # only its shape is read
        new_h, new_w = get_patch_output_size(image_chw, layout.resized_size, ChannelDimension.FIRST)
        (top, bottom), (left, right) = padding_of((new_h, new_w), layout.resized_size)
        assert layout.content_box == (top, left, new_h, new_w), (height, width)
        assert top + new_h + bottom == layout.resized_size[0] and left + new_w + right == layout.resized_size[1]


def test_unpad_bounds_match_hf_unpad_image():
    for height, width in _sizes(13, 800):
        layout = plan_anyres(height, width, pinpoints=LLAVA_16_PINPOINTS)
        feat_h, feat_w = 24 * layout.rows, 24 * layout.cols
        features = torch.arange(feat_h * feat_w).reshape(1, feat_h, feat_w)
        expected = unpad_image(features, (height, width))[0].numpy()
        r0, r1, c0, c1 = layout.unpad_bounds(feat_h, feat_w)
        np.testing.assert_array_equal(features[0].numpy()[r0:r1, c0:c1], expected, err_msg=str((height, width)))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="positive"):
        plan_internvl(0, 10)
    with pytest.raises(ValueError, match="min_tiles"):
        plan_internvl(10, 10, min_tiles=5, max_tiles=4)
    with pytest.raises(ValueError, match="multiple of the tile"):
        plan_anyres(10, 10, pinpoints=[[300, 600]])
    with pytest.raises(ValueError, match="kind"):
        TileLayout(kind="nope", rows=1, cols=1, tile=4, global_view="none", orig_size=(4, 4),
                   resized_size=(4, 4), content_box=(0, 0, 4, 4))
    with pytest.raises(ValueError, match="content_box"):
        TileLayout(kind="fixed", rows=1, cols=1, tile=4, global_view="none", orig_size=(4, 4),
                   resized_size=(4, 4), content_box=(1, 0, 4, 4))
