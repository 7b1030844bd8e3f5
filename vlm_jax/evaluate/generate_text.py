"""One image + one question → the model's answer as text (notebooks, the ``vlm-jax generate`` command).

The prompt is built exactly like training data (DESIGN.md "Data flow"): the image is tiled by the model's
:class:`~vlm_jax.data.processor.ImageProcessor`, the question is rendered by the chat template as a
conversation that ends with a human turn (so the template appends the assistant header: a generation
prompt), and the ``<image>`` placeholder expands to the model's number of visual tokens. Generation
stops at the template's end-of-answer / EOS ids (:func:`~vlm_jax.data.templates.answer_stop_ids`);
optional stop *strings* are cut on the host after decoding.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from vlm_jax.data.batching import pad_batch
from vlm_jax.data.templates import IMAGE_PLACEHOLDER, answer_stop_ids, tokenize_conversation
from vlm_jax.evaluate.generate import generate
from vlm_jax.evaluate.sampling import GREEDY, SamplingConfig
from vlm_jax.model import VLM
from vlm_jax.tiling import load_image


def truncate_at_stop_strings(text: str, stop_strings: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest occurrence of any of ``stop_strings``."""
    cut = len(text)
    for stop in stop_strings:
        if not stop:
            raise ValueError("stop strings must be non-empty")
        found = text.find(stop)
        if found != -1:
            cut = min(cut, found)
    return text[:cut]


def _as_image(image: bytes | np.ndarray) -> np.ndarray:
    if isinstance(image, (bytes, bytearray, memoryview)):
        return load_image(bytes(image))
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be encoded bytes or a uint8 [H, W, 3] array, got {image.dtype} {image.shape}")
    return image


def prompt_batch(tokenizer, processor, image: bytes | np.ndarray, prompt: str, template: str) -> dict[str, np.ndarray]:
    """A one-row Batch: the tiled image and the generation prompt of ``prompt`` (``<image>`` prepended on
    its own line when the prompt does not place it)."""
    image = _as_image(image)
    views, grid = processor.process(image)
    n_image_tokens = processor.num_image_tokens(len(views), grid, image.shape[:2])
    text = prompt if IMAGE_PLACEHOLDER in prompt else f"{IMAGE_PLACEHOLDER}\n{prompt}"
    example = tokenize_conversation(tokenizer, template, [{"from": "human", "value": text}], n_image_tokens)
    record = {"id": "prompt", "pixels": np.asarray(views, np.float32), "grid": np.asarray(grid, np.int32),
              "orig_size": np.asarray(image.shape[:2], np.int32), **example._asdict()}
    return pad_batch([record], batch_size=1, max_views=processor.max_views, tile_size=processor.tile_size,
                     seq_buckets=[len(example.tokens)], pad_id=tokenizer.pad_id)


def decode_generated(tokenizer, tokens: np.ndarray, length: int, finished: bool,
                     stop_strings: Sequence[str] = ()) -> str:
    """Text of one generated row: its first ``length`` ids without the final stop id, cut at stop strings."""
    ids = np.asarray(tokens)[:int(length)]
    if finished:
        ids = ids[:-1]
    return truncate_at_stop_strings(tokenizer.decode(ids.tolist()), stop_strings)


def generate_text(model: VLM, tokenizer, processor, image: bytes | np.ndarray, prompt: str, template: str, *,
                  max_new_tokens: int = 64, sampling: SamplingConfig = GREEDY,
                  rng: jax.Array | None = None, stop_strings: Sequence[str] = ()) -> str:
    """The answer of ``model`` to ``prompt`` about ``image`` (encoded bytes or uint8 ``[H, W, 3]``)."""
    batch = prompt_batch(tokenizer, processor, image, prompt, template)
    out = jax.device_get(generate(model, batch, max_new_tokens=max_new_tokens,
                                  stop_ids=answer_stop_ids(tokenizer, template), sampling=sampling, rng=rng,
                                  pad_id=tokenizer.pad_id))
    return decode_generated(tokenizer, out.tokens[0], out.lengths[0], out.finished[0], stop_strings)
