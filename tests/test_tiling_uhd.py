"""SliME adaptive slicing (spec/methods.md §6.2 [code]).

Rules from the spec: k = ceil(W*H / 336^2), k > 6 -> 6, k == 1 -> 2; slice counts {k, k+1} if
k <= 2 else {k-1, k, k+1}; every factorisation w_slices * h_slices of each count, counts ascending
and w_slices ascending; choose by the LLaVA-NeXT criterion (max effective pixels, then min wasted,
first wins). The criterion itself is checked against HF ``select_best_resolution``.
"""

import numpy as np
import pytest
from transformers.image_processing_utils import select_best_resolution

from vlm_jax.tiling import plan_uhd, uhd_candidate_grids


def test_candidates_small_image():
    # 336x336: k = ceil(1.0) = 1 -> 2, counts {2, 3}: (rows, cols) for cols = 1..n dividing n.
    assert uhd_candidate_grids(336, 336) == [(2, 1), (1, 2), (3, 1), (1, 3)]
    # 10x10: k = ceil(100/112896) = 1 -> 2, same set: 1x1 never appears.
    assert uhd_candidate_grids(10, 10) == [(2, 1), (1, 2), (3, 1), (1, 3)]


def test_candidates_k_two_and_three():
    # 336x400 = 134400 px -> k = ceil(1.19) = 2 -> counts {2, 3} (k <= 2 keeps only k, k+1).
    assert uhd_candidate_grids(336, 400) == [(2, 1), (1, 2), (3, 1), (1, 3)]
    # 336x700 = 235200 px -> k = ceil(2.08) = 3 -> counts {2, 3, 4}; 4 = 1x4, 2x2, 4x1.
    assert uhd_candidate_grids(336, 700) == [(2, 1), (1, 2), (3, 1), (1, 3), (4, 1), (2, 2), (1, 4)]


def test_candidates_clamped_for_large_images():
    # 3000x4000 = 12e6 px -> k = 107 -> clamped to 6 -> counts {5, 6, 7} (7x1 and 1x7 possible).
    assert uhd_candidate_grids(3000, 4000) == [(5, 1), (1, 5), (6, 1), (3, 2), (2, 3), (1, 6), (7, 1), (1, 7)]
    # max_slices=4: k = 4 -> counts {3, 4, 5}.
    assert uhd_candidate_grids(3000, 4000, max_slices=4) == [(3, 1), (1, 3), (4, 1), (2, 2), (1, 4), (5, 1), (1, 5)]


def test_hand_checked_choices():
    # 336x336 square: every candidate keeps all 112896 px; 2-slice grids waste 112896 px, 3-slice
    # grids twice that; (2,1) and (1,2) tie exactly -> the first visited, (rows=2, cols=1), wins.
    layout = plan_uhd(336, 336)
    assert (layout.rows, layout.cols) == (2, 1)
    # canvas 672x336: fitted 336x336 (limited by width), centred vertically: top = (672-336)//2.
    assert layout.content_box == (168, 0, 336, 336)
    # 336x1344 strip: k = 4, counts {3,4,5}; 1x4 (336x1344) holds it exactly with zero waste.
    assert (plan_uhd(336, 1344).rows, plan_uhd(336, 1344).cols) == (1, 4)
    # 3000x4000: effective px of 2x3 (672x1008): s = min(1008/4000, 672/3000) = .224 -> 896*672 = 602112;
    # 3x2: s = .168 -> 672*504 = 338688; 1x5/1x6/1x7: s = .112 -> 448*336 = 150528; 5x1..7x1 smaller.
    assert (plan_uhd(3000, 4000).rows, plan_uhd(3000, 4000).cols) == (2, 3)
    # 1000x100 (tall, 1e5 px): k = 1 -> 2; 3x1 (1008x336): s = min(3.36, 1.008) -> 100*1008 >= 1e5 (all
    # pixels kept), 2x1 keeps only 67*672 = 45024 -> (3, 1).
    assert (plan_uhd(1000, 100).rows, plan_uhd(1000, 100).cols) == (3, 1)


def test_properties_and_criterion_vs_hf_on_random_sizes():
    rng = np.random.default_rng(0)
    sizes = np.exp(rng.uniform(0, np.log(5000), size=(1500, 2))).astype(int)
    for height, width in [tuple(map(int, s)) for s in sizes] + [(1, 1), (1, 4000), (4000, 1)]:
        for max_slices in (6, 9):
            layout = plan_uhd(height, width, max_slices=max_slices)
            count = layout.rows * layout.cols
            assert 2 <= count <= max_slices + 1, (height, width)
            assert layout.num_views == count + 1 and layout.global_view == "first"
            candidates = [(336 * r, 336 * c) for r, c in uhd_candidate_grids(height, width, max_slices=max_slices)]
            assert layout.resized_size == tuple(select_best_resolution((height, width), candidates))


def test_bad_max_slices():
    with pytest.raises(ValueError, match="max_slices"):
        plan_uhd(100, 100, max_slices=1)
    with pytest.raises(ValueError, match="global_mode"):
        plan_uhd(100, 100, global_mode="zoom")
