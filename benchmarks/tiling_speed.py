"""Host tiling, vlm_jax vs the Hugging Face PIL image processors, single-threaded (issue 11, items 1 and 5).

InternVL dynamic tiling (448 px, ≤ 12 tiles + thumbnail) vs ``GotOcr2ImageProcessorPil(crop_to_patches=True)``
and LLaVA-NeXT anyres (336 px, the v1.6 pinpoints) vs ``LlavaNextImageProcessorPil``, on a fixed set of
generated images (smooth gradients + noise, so the bicubic filter matters). vlm_jax: ``make_tiler(...).plan``,
``crop_views``, ``normalize`` from an RGB uint8 array; the processor gets the same array. Check: same views
shape and max |Δpixel| ≤ 1e-5 after normalisation, every image (an untimed pass). The floor is the PIL work no
implementation avoids: the bicubic resize of the image into its canvas and, with a global view, the resize of
the whole image to one tile (:func:`vlm_jax.tiling.resize_bicubic`, array in and out).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

from benchmarks.benchmark import Benchmark
from benchmarks.context import RunContext
from benchmarks.results import Row, within
from benchmarks.timing import interleaved, median
from vlm_jax.tiling import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Tiler,
    crop_views,
    make_tiler,
    normalize,
    resize_bicubic,
)
from vlm_jax.tiling.registry import anyres_default_pinpoints

PIXEL_ATOL = 1e-5
IMAGE_SETS = {"full": (30, 1000, 3000), "quick": (6, 500, 1500), "tiny": (2, 64, 200)}  # count, min, max side


@dataclasses.dataclass(frozen=True)
class TilingCase:
    """One tiler and its Hugging Face reference processor."""

    name: str
    tiler: Tiler
    mean: tuple[float, ...]
    std: tuple[float, ...]
    processor: Callable[[], Callable[[np.ndarray], np.ndarray]]  # () -> (image -> views [N, 3, H, W])
    peer: str


def _got_ocr2() -> Callable[[np.ndarray], np.ndarray]:
    proc = GotOcr2ImageProcessorPil(size={"height": 448, "width": 448}, crop_to_patches=True, min_patches=1,
                                    max_patches=12, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)
    return lambda image: proc(image, return_tensors="np")["pixel_values"]


def _llava_next() -> Callable[[np.ndarray], np.ndarray]:
    proc = LlavaNextImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
                                      image_grid_pinpoints=anyres_default_pinpoints(336), image_mean=CLIP_MEAN,
                                      image_std=CLIP_STD)
    return lambda image: proc(image, return_tensors="np")["pixel_values"][0]


def generated_images(ctx: RunContext) -> list[np.ndarray]:
    """The run's fixed image set: ``count`` RGB uint8 images with sides drawn in ``[min, max]`` (seeded)."""
    def make():
        count, low, high = ctx.pick(IMAGE_SETS)
        rng = np.random.default_rng(0)
        images = []
        for height, width in rng.integers(low, high + 1, (count, 2)):
            yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
            base = np.stack([xx * (255 / width), yy * (255 / height), (xx + yy) % 256], axis=-1)
            noise = rng.integers(-40, 40, (height, width, 3), dtype=np.int16)
            images.append(np.clip(base + noise, 0, 255).astype(np.uint8))
        return images

    return ctx.once("tiling_images", make)


def _ours(case: TilingCase, image: np.ndarray) -> np.ndarray:
    """``[N, tile, tile, 3]`` float32 views of ``image``."""
    return normalize(crop_views(image, case.tiler.plan(*image.shape[:2])), case.mean, case.std)


def _pil_floor(case: TilingCase, image: np.ndarray) -> None:
    layout = case.tiler.plan(*image.shape[:2])
    _, _, height, width = layout.content_box
    resize_bicubic(image, height, width)
    if layout.global_view != "none":
        resize_bicubic(image, layout.tile, layout.tile)


def _max_pixel_error(case: TilingCase, processor, images: list[np.ndarray]) -> float:
    worst = 0.0
    for image in images:
        ours, ref = _ours(case, image).transpose(0, 3, 1, 2), processor(image)
        if ours.shape != ref.shape:
            return float("inf")
        worst = max(worst, float(np.abs(ours - ref).max()))
    return worst


def run_case(case: TilingCase, ctx: RunContext) -> list[Row]:
    images = generated_images(ctx)
    processor = case.processor()
    check = within("max |Δpixel|", _max_pixel_error(case, processor, images), PIXEL_ATOL)  # also the warm-up
    seconds, _ = interleaved({
        "vlm_jax": lambda: [_ours(case, image) for image in images],
        "hf": lambda: [processor(image) for image in images],
        "pil_floor": lambda: [_pil_floor(case, image) for image in images]}, warmup=0, repeats=ctx.repeats)
    t = {k: median(v) for k, v in seconds.items()}
    n = len(images)
    sides = [min(image.shape[:2]) for image in images] + [max(image.shape[:2]) for image in images]
    details = dict(images=n, min_side=min(sides), max_side=max(sides), tile=case.tiler.tile,
                   options=dict(case.tiler.options), seconds=seconds,
                   views=sum(case.tiler.plan(*image.shape[:2]).num_views for image in images))
    label = f"{case.name} ({case.tiler.tile} px), {n} images of {min(sides)}-{max(sides)} px"
    return [
        Row(f"{label} (img/s) vs {case.peer}", n / t["vlm_jax"], n / t["hf"], True, check, details),
        Row(f"{case.name} per image (ms) vs the PIL resizes it cannot avoid", 1e3 * t["vlm_jax"] / n,
            1e3 * t["pil_floor"] / n, False),
    ]


INTERNVL_CASE = TilingCase("InternVL tiling", make_tiler("internvl", tile=448, max_tiles=12), IMAGENET_MEAN,
                           IMAGENET_STD, _got_ocr2, "GotOcr2ImageProcessorPil")
ANYRES_CASE = TilingCase("LLaVA-NeXT anyres", make_tiler("anyres", tile=336), CLIP_MEAN, CLIP_STD, _llava_next,
                         "LlavaNextImageProcessorPil")
INTERNVL = Benchmark("tiling_internvl", "InternVL tiling img/s vs GotOcr2ImageProcessorPil, and vs the PIL floor",
                     lambda ctx: run_case(INTERNVL_CASE, ctx))
ANYRES = Benchmark("tiling_anyres", "LLaVA-NeXT anyres img/s vs LlavaNextImageProcessorPil, and vs the PIL floor",
                   lambda ctx: run_case(ANYRES_CASE, ctx))
