"""Visual-token layouts against transformers' LLaVA-NeXT packing and InternVL pixel shuffle."""

import types

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from transformers.models.internvl.modeling_internvl import InternVLModel
from transformers.models.llava_next.modeling_llava_next import LlavaNextModel, get_anyres_image_grid_shape

from vlm_jax.hires.merge import anyres_capacity, anyres_num_tokens, anyres_tokens, flat_tokens, scatter_visual
from vlm_jax.projectors import pixel_shuffle

PINPOINTS = [[32, 64], [64, 32], [64, 64], [96, 32], [32, 96]]
SIDE, TILE, D = 4, 32, 6  # 32 px tiles, patch 8 -> 4x4 tokens per view


def _hf_pack(feats, size, newline):
    cfg = types.SimpleNamespace(vision_config=types.SimpleNamespace(image_size=TILE, patch_size=TILE // SIDE),
                                image_grid_pinpoints=PINPOINTS)
    stand_in = types.SimpleNamespace(config=cfg)
    out, lens = LlavaNextModel.pack_image_features(stand_in, [torch.tensor(feats)], torch.tensor([size]),
                                                   "default", torch.tensor(newline))
    return out[0].numpy()


@pytest.mark.parametrize("size", [(30, 64), (64, 30), (50, 50), (20, 90), (90, 21), (33, 65), (64, 64), (17, 31)])
def test_anyres_tokens_match_hf_pack_image_features(size):
    rng = np.random.default_rng(sum(size))
    rows, cols = (int(v) for v in get_anyres_image_grid_shape(size, PINPOINTS, TILE))
    n_max = 5  # capacity for at most 4 grid tiles + base
    feats = rng.normal(size=(1 + rows * cols, SIDE * SIDE, D)).astype(np.float32)
    newline = rng.normal(size=(D,)).astype(np.float32)
    ref = _hf_pack(feats, size, newline)

    padded = np.zeros((1, n_max, SIDE * SIDE, D), np.float32)
    padded[0, : len(feats)] = feats
    cap = anyres_capacity(n_max, SIDE)
    out, valid = anyres_tokens(jnp.asarray(padded), jnp.array([[rows, cols]]), jnp.array([size]),
                               jnp.asarray(newline), SIDE, cap)
    n = int(valid.sum())
    assert n == len(ref) == anyres_num_tokens(rows, cols, *size, SIDE)
    assert bool(valid[0, :n].all()) and not bool(valid[0, n:].any())  # valid tokens are a prefix
    np.testing.assert_array_equal(np.asarray(out[0, :n]), ref)


def test_pixel_shuffle_matches_hf():
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 4)).astype(np.float32)
    ref = InternVLModel.pixel_shuffle(None, torch.tensor(x), 0.5).numpy()
    np.testing.assert_array_equal(np.asarray(pixel_shuffle(jnp.asarray(x))), ref)
    with pytest.raises(ValueError, match="divisible"):
        pixel_shuffle(jnp.zeros((1, 7, 8, 4)))


def test_flat_and_scatter():
    rng = np.random.default_rng(1)
    tokens = jnp.asarray(rng.normal(size=(2, 3, 2, 4)).astype(np.float32))
    tile_mask = jnp.array([[True, True, False], [True, False, False]])
    vis, valid = flat_tokens(tokens, tile_mask)
    assert vis.shape == (2, 6, 4) and valid.sum(1).tolist() == [4, 2]
    slots = np.zeros((2, 8), bool)
    slots[0, 1:5] = True  # 4 slots for 4 tokens
    slots[1, 2:6] = True  # 4 slots, only 2 tokens: right-aligned, the first two stay unfilled
    embeds = jnp.zeros((2, 8, 4))
    out, filled = scatter_visual(embeds, jnp.asarray(slots), vis, valid)
    np.testing.assert_array_equal(np.asarray(out[0, 1:5]), np.asarray(tokens[0, :2].reshape(4, 4)))
    np.testing.assert_array_equal(np.asarray(out[1, 4:6]), np.asarray(tokens[1, 0]))
    assert np.asarray(filled[1]).tolist() == [False, False, False, False, True, True, False, False]
    assert float(jnp.abs(out[1, :4]).sum()) == 0.0 and float(jnp.abs(out[1, 6:]).sum()) == 0.0
