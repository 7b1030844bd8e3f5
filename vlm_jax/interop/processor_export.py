"""The processor files of an exported model: ``preprocessor_config.json`` (the image processor) and
``processor_config.json`` (how the processor expands the image placeholder), as transformers 5 writes them.

The image processor reproduces the run's tiler (``config.data.tiling``, :mod:`vlm_jax.tiling.registry`) pixel for
pixel (PIL bicubic resizes, spec/parity.md §2), one entry per family in :data:`PROCESSORS`:

  ===========  ==========================  ============================================================
  family       tiler the family accepts    HF image processor / processor
  ===========  ==========================  ============================================================
  llava        ``fixed`` 1x1, no global    ``CLIPImageProcessor`` stretching to ``tile x tile`` (no
               view                        centre crop) / ``LlavaProcessor`` (LLaVA-1.5, §1)
  llava_next   ``anyres`` (its pinpoints)  ``LlavaNextImageProcessor`` with the same pinpoints /
                                           ``LlavaNextProcessor`` (§2.2)
  internvl     ``internvl`` with thumbnail ``GotOcr2ImageProcessor(crop_to_patches)`` (min/max tiles) /
                                           ``InternVLProcessor`` (``image_seq_length`` per tile, §2.1)
  ===========  ==========================  ============================================================

Any other tiler (or option the HF processor has no setting for, e.g. InternVL without thumbnail) is refused with
:class:`~vlm_jax.interop.errors.NotExportable` naming it, and so is an InternVL run whose tokenizer does not declare
the tokens ``InternVLProcessor`` reads (:data:`INTERNVL_TOKENS`). Mean/std come from ``tiling.norm``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from vlm_jax.data.processor import ImageProcessor
from vlm_jax.data.tokenizer import Tokenizer
from vlm_jax.interop.errors import NotExportable
from vlm_jax.model_config import VLMConfig

IMAGE_PROCESSOR_FILE = "preprocessor_config.json"
PROCESSOR_FILE = "processor_config.json"
INTERNVL_TOKENS = ("start_image_token", "end_image_token", "context_image_token", "video_token")


def _image_processor(kind: str, processor: ImageProcessor, **fields: Any) -> dict[str, Any]:
    """The fields every PIL image processor of transformers 5 shares (resize, rescale, normalise)."""
    return dict(image_processor_type=kind, do_convert_rgb=True, do_resize=True, resample=3, do_rescale=True,
                rescale_factor=1 / 255, do_normalize=True, image_mean=list(processor.mean),
                image_std=list(processor.std), **fields)


def _llava_text_side(cfg: VLMConfig, hf_config: Mapping[str, Any]) -> dict[str, Any]:
    """LLaVA-style processors count ``(image_size / patch)² + CLS`` tokens per view, minus the CLS they drop."""
    return dict(patch_size=cfg.vision.patch, num_additional_image_tokens=int(cfg.vision.cls_token),
                vision_feature_select_strategy=hf_config["vision_feature_select_strategy"])


def _llava(processor: ImageProcessor, cfg: VLMConfig, hf_config: Mapping[str, Any]) -> tuple[dict, dict]:
    options = dict(processor.tiler.options)
    if processor.kind != "fixed" or options != dict(rows=1, cols=1, global_view="none"):
        raise NotExportable(f"a llava export needs the tiler fixed 1x1 without global view (one stretched view, "
                            f"as CLIPImageProcessor makes), not {processor.kind!r} {options}")
    side = processor.tile
    image = _image_processor("CLIPImageProcessor", processor, size=dict(height=side, width=side),
                             do_center_crop=False, crop_size=dict(height=side, width=side))
    return image, dict(processor_class="LlavaProcessor", **_llava_text_side(cfg, hf_config))


def _llava_next(processor: ImageProcessor, cfg: VLMConfig, hf_config: Mapping[str, Any]) -> tuple[dict, dict]:
    if processor.kind != "anyres":
        raise NotExportable(f"a llava_next export needs the anyres tiler, not {processor.kind!r}")
    pinpoints = [[int(h), int(w)] for h, w in processor.tiler.options["pinpoints"]]
    if pinpoints != hf_config["image_grid_pinpoints"]:
        raise NotExportable(f"the tiler's pinpoints {pinpoints} differ from the config's image_grid_pinpoints "
                            f"{hf_config['image_grid_pinpoints']}")
    side = processor.tile
    image = _image_processor("LlavaNextImageProcessor", processor, size=dict(shortest_edge=side),
                             crop_size=dict(height=side, width=side), image_grid_pinpoints=pinpoints, do_pad=True,
                             do_center_crop=True)
    return image, dict(processor_class="LlavaNextProcessor", **_llava_text_side(cfg, hf_config))


def _check_internvl_tokens(tokenizer: Tokenizer) -> None:
    """``InternVLProcessor`` reads these tokens from the tokenizer config (``extra_special_tokens``)."""
    missing = [key for key in INTERNVL_TOKENS if key not in tokenizer.special_tokens]
    if missing:
        raise NotExportable(f"InternVLProcessor needs the tokenizer tokens {missing} (tokenizer_config.json "
                            "extra_special_tokens, as in the llava-hf style InternVL checkpoints); the run's tokenizer "
                            f"{tokenizer.model_path} does not declare them")
    if tokenizer.special_tokens["context_image_token"] != tokenizer.image_token:
        raise NotExportable(f"the tokenizer's context_image_token {tokenizer.special_tokens['context_image_token']!r} "
                            f"is not its image token {tokenizer.image_token!r}")


def _internvl(processor: ImageProcessor, cfg: VLMConfig, hf_config: Mapping[str, Any]) -> tuple[dict, dict]:
    options = processor.tiler.options
    if processor.kind != "internvl" or not options["thumbnail"]:
        raise NotExportable(f"an internvl export needs the internvl tiler with thumbnail=True (GotOcr2ImageProcessor "
                            f"always adds it), not {processor.kind!r} {dict(options)}")
    side = processor.tile
    image = _image_processor("GotOcr2ImageProcessor", processor, size=dict(height=side, width=side),
                             crop_to_patches=True, min_patches=options["min_tiles"], max_patches=options["max_tiles"])
    return image, dict(processor_class="InternVLProcessor", image_seq_length=cfg.tokens_per_view)


# family -> (processor, model config, config.json dict) -> (preprocessor_config, processor_config)
PROCESSORS: dict[str, Callable[[ImageProcessor, VLMConfig, Mapping[str, Any]], tuple[dict, dict]]] = {
    "llava": _llava, "llava_next": _llava_next, "internvl": _internvl}


def processor_files(family: str, tiling: Mapping[str, Any], cfg: VLMConfig, hf_config: Mapping[str, Any],
                    tokenizer: Tokenizer) -> dict[str, dict[str, Any]]:
    """``{file name: content}`` of the processor files of ``family`` for the run's ``tiling`` block and
    ``tokenizer`` (module docstring for what is accepted). ``hf_config`` is the exported ``config.json`` (the
    processor must count tokens as the model does).
    """
    if family not in PROCESSORS:
        raise NotExportable(f"no processor export for family {family!r}; known: {sorted(PROCESSORS)}")
    try:
        processor = ImageProcessor(tiling, cfg)
    except ValueError as e:
        raise NotExportable(f"the run's tiling {dict(tiling)} does not fit the model: {e}") from e
    image, text = PROCESSORS[family](processor, cfg, hf_config)
    if family == "internvl":  # InternVLProcessor reads its tokens from the tokenizer
        _check_internvl_tokens(tokenizer)
    else:
        text["image_token"] = tokenizer.image_token
    return {IMAGE_PROCESSOR_FILE: image, PROCESSOR_FILE: text}
