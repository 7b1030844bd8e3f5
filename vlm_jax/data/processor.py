"""The host-side image processor of a model: tiler (``vlm_jax.tiling.registry``) + crops + normalisation, and
the number of image placeholder tokens each example needs (from the model config, so prompt and model agree).

Config block (``config.data.tiling``)::

    kind: a tiler kind of ``vlm_jax.tiling.TILERS`` (internvl | anyres | uhd | fixed | dual)
    tile: view side in pixels (default and only accepted value: the ViT ``image_size``)
    norm: "imagenet" | "clip" | "siglip" (default "clip")
    every other key: an option of the tiler kind (the registry lists them with their defaults)

The processor refuses, when it is built, a tiler whose whole-image view position differs from the model's
``global_view`` or that can make more views than the model's ``max_views``. It imports no model code: the
model config reaches it as a :class:`ModelGeometry` (any object with those attributes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

import numpy as np

from vlm_jax import tiling

NORMS = {"imagenet": (tiling.IMAGENET_MEAN, tiling.IMAGENET_STD), "clip": (tiling.CLIP_MEAN, tiling.CLIP_STD),
         "siglip": (tiling.SIGLIP_MEAN, tiling.SIGLIP_STD)}


class VisionGeometry(Protocol):
    image_size: int


class ModelGeometry(Protocol):
    """What the processor reads from the model config (``VLMConfig`` satisfies it)."""

    @property
    def vision(self) -> VisionGeometry: ...

    @property
    def max_views(self) -> int: ...

    @property
    def global_view(self) -> str: ...

    def num_image_tokens(self, n_views: int, grid: tuple[int, int], orig_size: tuple[int, int]) -> int: ...


class ProcessedImage(NamedTuple):
    """One image as views: ``views float32 [n, T, T, 3]``, ``grid (rows, cols)``, and ``global_index``, the index
    of the whole-image view among the ``n`` views (also in the padded ``[N_max]``; -1 when there is none)."""

    views: np.ndarray
    grid: tuple[int, int]
    global_index: int


class ImageProcessor:
    """``process(image uint8 [H, W, 3], rng) -> (views float32 [n, T, T, 3], grid (rows, cols))``;
    ``process_image`` also gives the global view index."""

    def __init__(self, tiling_cfg: Mapping[str, Any], model_cfg: ModelGeometry):
        cfg = dict(tiling_cfg)
        if "kind" not in cfg:
            raise ValueError(f"the tiling config needs a kind; known: {', '.join(tiling.TILERS)}")
        self.kind = cfg.pop("kind")
        image_size = model_cfg.vision.image_size
        self.tile = cfg.pop("tile", image_size)
        if self.tile != image_size:
            raise ValueError(f"tiling.tile={self.tile} must equal the ViT image_size={image_size}")
        norm = cfg.pop("norm", "clip")
        if norm not in NORMS:
            raise ValueError(f"unknown tiling.norm {norm!r}; known: {sorted(NORMS)}")
        self.mean, self.std = NORMS[norm]
        self.tiler = tiling.make_tiler(self.kind, tile=self.tile, **cfg)
        if self.tiler.global_view != model_cfg.global_view:
            raise ValueError(f"tiler {self.kind!r} with {dict(self.tiler.options)} puts the global view "
                             f"{self.tiler.global_view!r} but the model's global_view is {model_cfg.global_view!r}")
        if self.tiler.max_views > model_cfg.max_views:
            raise ValueError(f"tiler {self.kind!r} with {dict(self.tiler.options)} makes up to "
                             f"{self.tiler.max_views} views but the model's max_views is {model_cfg.max_views}")
        self.model_cfg = model_cfg
        self.max_views = model_cfg.max_views
        self.tile_size = self.tile

    def plan(self, height: int, width: int) -> tiling.TileLayout:
        return self.tiler.plan(height, width)

    def process_image(self, image: np.ndarray, rng: np.random.Generator | None = None) -> ProcessedImage:
        """Views in the reference order; ``rng`` is unused (tiling is deterministic) but kept for augmentations."""
        layout = self.plan(*image.shape[:2])
        views = tiling.normalize(tiling.crop_views(image, layout), self.mean, self.std)
        return ProcessedImage(views, (layout.rows, layout.cols), layout.global_view_index)

    def process(self, image: np.ndarray, rng: np.random.Generator | None = None) -> tuple[np.ndarray, tuple[int, int]]:
        """``(views, grid)`` of :meth:`process_image` (the pipeline's data contract)."""
        views, grid, _ = self.process_image(image, rng)
        return views, grid

    def num_image_tokens(self, n_views: int, grid: tuple[int, int], orig_size: tuple[int, int]) -> int:
        return self.model_cfg.num_image_tokens(n_views, grid, orig_size)
