"""Tiny model configs and random batches shared by the tests."""

import numpy as np

from vlm_jax import presets
from vlm_jax.model import VLMConfig


def tiny_llava_next(**kw) -> VLMConfig:
    """CLIP-style 32 px ViT (4x4 patches of 8 px), anyres with up to 4 tiles + base, tiny Llama."""
    return VLMConfig.from_dict(dict(vision=presets.tiny_vision("clip"), llm=presets.tiny_llm(),
                                    layout="anyres", max_views=5, image_token_id=100, **kw))


def tiny_internvl(**kw) -> VLMConfig:
    """InternViT-style ViT + pixel shuffle projector, flat layout with up to 4 views."""
    return VLMConfig.from_dict(dict(vision=presets.tiny_vision("internvit"), llm=presets.tiny_llm(),
                                    projector=dict(kind="internvl"), select_layer=-1, layout="flat", max_views=4,
                                    image_token_id=100, **kw))


def random_batch(cfg: VLMConfig, batch_size: int = 8, seq_len: int = 96, seed: int = 0) -> dict:
    """A Batch with random pixels/tokens, varied grids, and exactly the right number of image slots."""
    rng = np.random.default_rng(seed)
    t = cfg.vision.image_size
    b = {
        "pixels": rng.normal(size=(batch_size, cfg.max_views, t, t, 3)).astype(np.float32),
        "tile_mask": np.zeros((batch_size, cfg.max_views), bool),
        "grid": np.ones((batch_size, 2), np.int32),
        "orig_size": np.zeros((batch_size, 2), np.int32),
        "tokens": rng.integers(1, cfg.llm.vocab_size, size=(batch_size, seq_len)).astype(np.int32),
        "valid": np.zeros((batch_size, seq_len), bool),
        "image_slots": np.zeros((batch_size, seq_len), bool),
        "loss_mask": np.zeros((batch_size, seq_len), bool),
        "prompt_mask": np.zeros((batch_size, seq_len), bool),
    }
    grids = [(1, 1), (1, 2), (2, 1), (2, 2), (1, 3), (3, 1)]
    for i in range(batch_size):
        rows, cols = grids[i % len(grids)]
        n_views = min(1 + rows * cols, cfg.max_views) if cfg.layout == "anyres" or rows * cols > 1 else 1
        if cfg.layout != "anyres":
            rows, cols = (1, 1) if n_views == 1 else (rows, cols)
            n_views = min(n_views, cfg.max_views)
        h, w = int(rng.integers(20, 70)), int(rng.integers(20, 70))
        b["tile_mask"][i, :n_views] = True
        b["grid"][i] = (rows, cols)
        b["orig_size"][i] = (h, w)
        n_img = cfg.num_image_tokens(n_views, (rows, cols), (h, w))
        length = min(seq_len, n_img + 4 + int(rng.integers(0, 8)))
        assert n_img + 4 <= seq_len, "sequence too short for the image"
        b["valid"][i, :length] = True
        b["image_slots"][i, 1:1 + n_img] = True
        b["tokens"][i, 1:1 + n_img] = cfg.image_token_id
        b["loss_mask"][i, 1 + n_img:length] = True
        b["tokens"][i, length:] = 0
    return b
