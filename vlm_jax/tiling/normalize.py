"""Pixel normalisation constants, ``normalize`` and ``pad_views`` (static ``N_max`` views + mask).

See DESIGN.md "Data flow": views are padded to a fixed ``N_max`` with a boolean ``tile_mask`` so a
batch has static shapes under ``jit``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)


def mean_colour(mean: Sequence[float]) -> tuple[int, int, int]:
    """uint8 RGB of a normalisation mean, truncated as LLaVA's ``expand2square`` does ((122, 116, 104) for CLIP)."""
    r, g, b = (int(m * 255) for m in mean)
    return r, g, b


def normalize(views: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(views / 255 - mean) / std`` as float32. ``views``: uint8 ``[..., 3]`` -> float32 ``[..., 3]``."""
    views = np.asarray(views)
    if views.dtype != np.uint8:
        raise ValueError(f"normalize expects uint8 pixels, got {views.dtype}")
    if views.shape[-1] != len(mean) or len(mean) != len(std):
        raise ValueError(f"channel mismatch: views {views.shape}, mean {len(mean)}, std {len(std)}")
    scaled = views.astype(np.float64) / 255.0
    return ((scaled - np.asarray(mean)) / np.asarray(std)).astype(np.float32)


def pad_views(views: np.ndarray, n_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad ``views [N, ...]`` to ``[n_max, ...]``; ``mask [n_max]`` is True on the real views."""
    views = np.asarray(views)
    n = views.shape[0]
    if n > n_max:
        raise ValueError(f"image has {n} views but the batch holds at most n_max={n_max}; "
                         f"raise n_max or lower the planner's tile limit")
    padded = np.zeros((n_max, *views.shape[1:]), views.dtype)
    padded[:n] = views
    return padded, np.arange(n_max) < n
