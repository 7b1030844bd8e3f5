"""The host-side image processor of a model: tiling planner + crops + normalisation, and the number of
image placeholder tokens each example needs (from the model config, so prompt and model always agree).

Config block (``config.data.tiling``)::

    kind: "internvl" | "anyres" | "uhd" | "fixed" | "dual"
    tile: view side in pixels (must equal the ViT ``image_size``)
    norm: "imagenet" | "clip" | "siglip"
    internvl: min_tiles, max_tiles, thumbnail     anyres: pinpoints [[h, w], ...]
    uhd: max_slices, global_mode                  fixed: rows, cols, global_view     dual: n
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from vlm_jax import tiling
from vlm_jax.model import VLMConfig

NORMS = {"imagenet": (tiling.IMAGENET_MEAN, tiling.IMAGENET_STD), "clip": (tiling.CLIP_MEAN, tiling.CLIP_STD),
         "siglip": (tiling.SIGLIP_MEAN, tiling.SIGLIP_STD)}

_OPTIONS = {
    "internvl": ("min_tiles", "max_tiles", "thumbnail"),
    "anyres": ("pinpoints",),
    "uhd": ("max_slices", "global_mode"),
    "fixed": ("rows", "cols", "global_view"),
    "dual": ("n",),
}


class ImageProcessor:
    """``process(image uint8 [H, W, 3], rng) -> (views float32 [n, T, T, 3], grid (rows, cols))``."""

    def __init__(self, tiling_cfg: Mapping[str, Any], model_cfg: VLMConfig):
        cfg = dict(tiling_cfg)
        self.kind = cfg.pop("kind")
        if self.kind not in _OPTIONS:
            raise ValueError(f"unknown tiling kind {self.kind!r}; known: {sorted(_OPTIONS)}")
        self.tile = cfg.pop("tile", model_cfg.vision.image_size)
        if self.tile != model_cfg.vision.image_size:
            raise ValueError(f"tiling.tile={self.tile} must equal the ViT image_size={model_cfg.vision.image_size}")
        norm = cfg.pop("norm", "clip")
        if norm not in NORMS:
            raise ValueError(f"unknown tiling.norm {norm!r}; known: {sorted(NORMS)}")
        self.mean, self.std = NORMS[norm]
        unknown = sorted(set(cfg) - set(_OPTIONS[self.kind]))
        if unknown:
            raise ValueError(f"unknown options {unknown} for tiling kind {self.kind!r}; known: {_OPTIONS[self.kind]}")
        self.options = cfg
        self.model_cfg = model_cfg
        self.max_views = model_cfg.max_views
        self.tile_size = self.tile

    def plan(self, height: int, width: int) -> tiling.TileLayout:
        o, t = self.options, self.tile
        if self.kind == "internvl":
            return tiling.plan_internvl(height, width, tile=t, **o)
        if self.kind == "anyres":
            return tiling.plan_anyres(height, width, tile=t, pinpoints=o["pinpoints"])
        if self.kind == "uhd":
            return tiling.plan_uhd(height, width, tile=t, **o)
        if self.kind == "fixed":
            return tiling.plan_fixed(height, width, n_rows=o["rows"], n_cols=o["cols"], tile=t,
                                     global_view=o.get("global_view", "none"))
        return tiling.plan_dual(height, width, tile=t, **o)

    def process(self, image: np.ndarray, rng: np.random.Generator | None = None) -> tuple[np.ndarray, tuple[int, int]]:
        """Views in the reference order; ``rng`` is unused (tiling is deterministic) but kept for augmentations."""
        layout = self.plan(*image.shape[:2])
        if layout.num_views > self.max_views:
            raise ValueError(f"{layout.num_views} views exceed max_views={self.max_views}")
        views = tiling.normalize(tiling.crop_views(image, layout), self.mean, self.std)
        return views, (layout.rows, layout.cols)

    def num_image_tokens(self, n_views: int, grid: tuple[int, int], orig_size: tuple[int, int]) -> int:
        return self.model_cfg.num_image_tokens(n_views, grid, orig_size)
