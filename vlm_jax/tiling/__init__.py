"""vlm_jax.tiling: host-side image decoding, grid planning and view cropping (numpy / PIL).

Flow: ``load_image(bytes)`` -> ``plan_*(H, W, ...)`` (or ``make_tiler(kind, tile=..., **options).plan(H, W)``,
the registry of tiler kinds) -> ``crop_views(image, layout)`` -> ``normalize(views, mean, std)`` ->
``pad_views(views, n_max)``.
"""

from vlm_jax.tiling.anyres import best_fit_resolution, fit_within, plan_anyres
from vlm_jax.tiling.crop import crop_views, resize_bicubic
from vlm_jax.tiling.decode import DEFAULT_MAX_PIXELS, ImageError, load_image
from vlm_jax.tiling.dual import (
    contiguous_crops,
    expand_to_square,
    merge_contiguous,
    merge_strided,
    plan_dual,
    strided_crops,
)
from vlm_jax.tiling.internvl import internvl_candidate_grids, internvl_grid, plan_internvl
from vlm_jax.tiling.layout import TileLayout, plan_fixed
from vlm_jax.tiling.normalize import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SIGLIP_MEAN,
    SIGLIP_STD,
    mean_colour,
    normalize,
    pad_views,
)
from vlm_jax.tiling.registry import TILERS, Tiler, TilerKind, make_tiler, tiler_kind
from vlm_jax.tiling.uhd import plan_uhd, uhd_candidate_grids

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "DEFAULT_MAX_PIXELS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageError",
    "SIGLIP_MEAN",
    "SIGLIP_STD",
    "TILERS",
    "TileLayout",
    "Tiler",
    "TilerKind",
    "best_fit_resolution",
    "contiguous_crops",
    "crop_views",
    "expand_to_square",
    "fit_within",
    "internvl_candidate_grids",
    "internvl_grid",
    "load_image",
    "make_tiler",
    "mean_colour",
    "merge_contiguous",
    "merge_strided",
    "normalize",
    "pad_views",
    "plan_anyres",
    "plan_dual",
    "plan_fixed",
    "plan_internvl",
    "plan_uhd",
    "resize_bicubic",
    "strided_crops",
    "tiler_kind",
    "uhd_candidate_grids",
]
