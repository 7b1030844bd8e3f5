"""INF-LLaVA dual-perspective cropping (spec/methods.md §5.1, §5.2, §5.5).

Checks: contiguous and strided crops each partition the pixels exactly; they equal the indexing
definitions (``x[i*h:(i+1)*h, j*w:(j+1)*w]`` and ``x[i::n_rows, j::n_cols]``, the paper's and the
code's); merges invert them on numpy and jax.numpy with leading batch dims; and the dual views equal
the INF-LLaVA pipeline rebuilt from HF's ``CLIPImageProcessorPil`` (expand2square with the CLIP mean
colour -> resize/center-crop to ``n*tile``) followed by torch slicing as in ``encode_images``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from PIL import Image
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from vlm_jax.tiling import (
    CLIP_MEAN,
    CLIP_STD,
    contiguous_crops,
    crop_views,
    merge_contiguous,
    merge_strided,
    normalize,
    plan_dual,
    strided_crops,
)


@pytest.mark.parametrize("n_rows,n_cols,h,w", [(3, 3, 4, 5), (2, 4, 3, 2), (1, 5, 2, 2), (4, 1, 1, 3)])
def test_crops_partition_pixels_and_match_indexing(n_rows, n_cols, h, w):
    height, width = n_rows * h, n_cols * w
    ids = np.arange(height * width * 2).reshape(height, width, 2)  # every pixel has a unique id
    for crops in (contiguous_crops(ids, n_rows, n_cols), strided_crops(ids, n_rows, n_cols)):
        assert crops.shape == (n_rows * n_cols, h, w, 2)
        np.testing.assert_array_equal(np.sort(crops.reshape(-1)), np.arange(ids.size))
    local, glob = contiguous_crops(ids, n_rows, n_cols), strided_crops(ids, n_rows, n_cols)
    for i in range(n_rows):
        for j in range(n_cols):
            np.testing.assert_array_equal(local[i * n_cols + j], ids[i * h:(i + 1) * h, j * w:(j + 1) * w])
            np.testing.assert_array_equal(glob[i * n_cols + j], ids[i::n_rows, j::n_cols])


def test_strided_crops_match_paper_formula():
    """I_glo_ij(u, v) = I(x = j + u*n_W, y = i + v*n_H) (x horizontal), spec §5.1."""
    n_h, n_w = 2, 3
    image = np.random.default_rng(0).integers(0, 255, size=(n_h * 4, n_w * 5, 3))
    glob = strided_crops(image, n_h, n_w)
    for i in range(n_h):
        for j in range(n_w):
            for v in range(4):
                for u in range(5):
                    np.testing.assert_array_equal(glob[i * n_w + j, v, u], image[i + v * n_h, j + u * n_w])


@pytest.mark.parametrize("xp", [np, jnp])
def test_merges_invert_crops_with_batch_dims(xp):
    x = xp.asarray(np.random.default_rng(1).normal(size=(2, 3, 6, 8, 5)).astype(np.float32))
    for split, merge in ((contiguous_crops, merge_contiguous), (strided_crops, merge_strided)):
        crops = split(x, 3, 2)
        assert crops.shape == (2, 3, 6, 2, 4, 5)
        np.testing.assert_array_equal(np.asarray(merge(crops, 3, 2)), np.asarray(x))
        for b in range(2):  # leading dims are independent images
            np.testing.assert_array_equal(np.asarray(crops[1, b]), np.asarray(split(x[1, b], 3, 2)))


def test_crops_work_under_jit():
    x = jnp.arange(2 * 6 * 6 * 4, dtype=jnp.float32).reshape(2, 6, 6, 4)
    jitted = jax.jit(lambda a: (strided_crops(a, 3, 3), merge_strided(strided_crops(a, 3, 3), 3, 3)))
    crops, back = jitted(x)
    np.testing.assert_array_equal(np.asarray(crops), strided_crops(np.asarray(x), 3, 3))
    np.testing.assert_array_equal(np.asarray(back), np.asarray(x))


def test_crop_shape_errors():
    with pytest.raises(ValueError, match="divisible"):
        contiguous_crops(np.zeros((7, 6, 3)), 3, 3)
    with pytest.raises(ValueError, match="crops for a 3x3 grid"):
        merge_strided(np.zeros((8, 2, 2, 3)), 3, 3)


def _inf_llava_reference(image, tile, n):
    """expand2square(mean colour) -> CLIP processor at n*tile -> torch slicing as in encode_images."""
    height, width = image.shape[:2]
    side = max(height, width)
    fill = tuple(int(m * 255) for m in CLIP_MEAN)
    square = Image.new("RGB", (side, side), fill)
    square.paste(Image.fromarray(image), ((side - width) // 2, (side - height) // 2))
    processor = CLIPImageProcessorPil(size={"shortest_edge": n * tile},
                                      crop_size={"height": n * tile, "width": n * tile},
                                      image_mean=CLIP_MEAN, image_std=CLIP_STD)
    big = torch.from_numpy(processor(square, return_tensors="np")["pixel_values"][0])  # [3, n*tile, n*tile]
    local = [big[:, r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] for r in range(n) for c in range(n)]
    strided = [big[:, h::n, w::n] for h in range(n) for w in range(n)]
    return torch.stack(local + strided).numpy(), square


@pytest.mark.parametrize("height,width", [(30, 70), (70, 30), (48, 48), (5, 100), (101, 3)])
def test_dual_views_match_inf_llava_pipeline(height, width):
    tile, n = 16, 3
    image = np.random.default_rng(height * width).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    layout = plan_dual(height, width, tile=tile, n=n)
    assert layout.num_views == 2 * n * n + 1 and layout.resized_size == (n * tile, n * tile)
    views = crop_views(image, layout)
    expected, square = _inf_llava_reference(image, tile, n)
    ours = normalize(views[:-1], CLIP_MEAN, CLIP_STD).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(ours, expected, atol=1e-5, rtol=0)
    lowres = np.asarray(square.resize((tile, tile), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(views[-1], lowres)
