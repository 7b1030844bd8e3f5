"""The Grain input pipeline: raw examples -> fixed-shape Batches (DESIGN.md "Grain";
spec/anchors.md §3.6 "Grain pipeline: deterministic and resumable"; data contract).

Per host::

  MapDataset.source(source) .seed(seed) .shuffle() .repeat(num_epochs)
    .random_map(decode -> processor.process(image, rng) -> tokenize_conversation)
    [shard_index::shard_count]
    .to_iter_dataset() [.mp_prefetch(worker_count)]
    -> PadBatchIterDataset (drop bad examples with counts, batch, pad to N_max views / bucket L)

Design choices (why this order):
  * ``random_map`` sits before the per-host slice, so an element's randomness comes from Grain's
    per-element RNG keyed by its *global* index: the same example is augmented/tiled identically
    whatever the host count, worker count, or which neighbours turned out bad.
  * A bad example (unreadable source entry, corrupt image, invalid conversation, text longer than
    the largest bucket) becomes a skip marker, never an exception. Dropping, counting and batching
    happen after ``mp_prefetch`` in the main process: Grain interleaves the workers' slices back into
    the global order, so ``worker_count`` never changes the batches, and the counters
    (:class:`~vlm_jax.data.batching.PipelineStats`, ``iter(ds).stats``) live where the trainer
    reads them and are part of the iterator state (``get_state``/``set_state``).
"""

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import grain
import jax
import numpy as np
from absl import flags

from vlm_jax.data.batching import SKIP_REASON, PadBatchIterDataset, skip_marker
from vlm_jax.data.sources import ExampleError
from vlm_jax.data.templates import tokenize_conversation
from vlm_jax.tiling.decode import ImageError, load_image


class ImageProcessorProtocol(Protocol):
    """Data contract: turns one decoded image into views of a fixed tile size."""

    max_views: int
    tile_size: int

    def process(self, image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int]]:
        """uint8 [H, W, 3] -> (views float32 [n, T, T, 3], (rows, cols))."""

    def num_image_tokens(self, n_views: int, grid: tuple[int, int], orig_size: tuple[int, int]) -> int:
        """Number of "<image>" slots the language model reserves for these views."""


class _SkipUnreadable:
    """Source wrapper: an :class:`ExampleError` from ``source[i]`` becomes a skip marker."""

    def __init__(self, source):
        self._source = source

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            return self._source[index]
        except ExampleError as e:
            return skip_marker(e.example_id, e.reason, str(e))

    def __repr__(self) -> str:
        return f"SkipUnreadable({self._source!r})"


class ProcessExample:
    """Grain random map: raw example -> processed example (or a skip marker).

    Output: ``id``; ``pixels`` float32 [n, T, T, 3] (n = 0 for text-only examples); ``grid`` int32 [2];
    ``orig_size`` int32 [2] (H, W; zeros without an image); tokens int32 [L]; loss_mask,
    image_slots, prompt_mask bool [L] with L <= ``max_length``. Skip reasons: "bad_image"
    (decode failed), "bad_conversation" (the template rejected it), "too_long" (L > max_length),
    plus the sources' own reasons (e.g. "missing_image").
    """

    def __init__(self, processor: ImageProcessorProtocol, tokenizer, template: str, max_length: int,
                 tokenize_fn: Callable = tokenize_conversation):
        self.processor, self.tokenizer, self.template = processor, tokenizer, template
        self.max_length, self.tokenize_fn = max_length, tokenize_fn

    def _views(self, image_bytes: bytes | None, rng: np.random.Generator):
        tile = self.processor.tile_size
        if image_bytes is None:
            return np.zeros((0, tile, tile, 3), np.float32), (1, 1), (0, 0), 0
        image = load_image(image_bytes)
        views, grid = self.processor.process(image, rng)
        orig_size = image.shape[:2]
        return views, grid, orig_size, self.processor.num_image_tokens(len(views), grid, orig_size)

    def __call__(self, raw: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        if SKIP_REASON in raw:
            return raw
        example_id = raw["id"]
        try:
            views, grid, orig_size, n_image_tokens = self._views(raw["image"], rng)
        except ImageError as e:
            return skip_marker(example_id, "bad_image", str(e))
        try:
            text = self.tokenize_fn(self.tokenizer, self.template, raw["conversations"], n_image_tokens)
        except ValueError as e:
            return skip_marker(example_id, "bad_conversation", str(e))
        if len(text.tokens) > self.max_length:
            return skip_marker(example_id, "too_long",
                               f"{len(text.tokens)} tokens > largest bucket {self.max_length}")
        return {
            "id": example_id,
            "pixels": np.asarray(views, np.float32),
            "grid": np.asarray(grid, np.int32),
            "orig_size": np.asarray(orig_size, np.int32),
            "tokens": np.asarray(text.tokens, np.int32),
            "loss_mask": np.asarray(text.loss_mask, bool),
            "image_slots": np.asarray(text.image_slots, bool),
            "prompt_mask": np.asarray(text.prompt_mask, bool),
        }


def _check_args(seq_buckets: Sequence[int], batch_size: int, shard_index: int, shard_count: int,
                worker_count: int, pad_id: int) -> None:
    buckets = list(seq_buckets)
    if not buckets or any(b <= 0 for b in buckets) or buckets != sorted(set(buckets)):
        raise ValueError(f"seq_buckets must be positive and strictly increasing, got {buckets}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"need 0 <= shard_index < shard_count, got {shard_index}, {shard_count}")
    if worker_count < 0:
        raise ValueError(f"worker_count must be >= 0, got {worker_count}")
    if pad_id < 0:
        raise ValueError(f"tokenizer.pad_id must be a valid id >= 0, got {pad_id}")


def make_dataset(source, *, processor: ImageProcessorProtocol, tokenizer, template: str, batch_size: int,
                 seq_buckets: Sequence[int], seed: int, shuffle: bool = True,
                 num_epochs: int | None = None, shard_index: int | None = None,
                 shard_count: int | None = None, worker_count: int = 0,
                 drop_remainder: bool = True, tokenize_fn: Callable = tokenize_conversation,
                 read_options: grain.ReadOptions | None = None) -> PadBatchIterDataset:
    """Builds this host's pipeline of fixed-shape Batches (module docstring; data contract "Batch").

    Args:
      source: random-access raw examples (``vlm_jax.data.sources``).
      processor: an :class:`ImageProcessorProtocol` (e.g. ``vlm_jax.data.processor.ImageProcessor``);
        its ``max_views`` / ``tile_size`` fix the pixel shape.
      tokenizer, template: passed to ``tokenize_fn`` (default: ``templates.tokenize_conversation``);
        ``tokenizer.pad_id`` fills padded token positions.
      batch_size: examples per host batch B.
      seq_buckets: allowed text lengths L (strictly increasing); longer texts are skipped.
      seed: seeds the shuffle and every element's RNG; the same seed gives the same batches.
      num_epochs: passes over the source; None repeats forever.
      shard_index, shard_count: this host's slice ``[shard_index::shard_count]`` of the element
        stream (defaults: ``jax.process_index()``, ``jax.process_count()``).
      worker_count: processes for ``mp_prefetch`` (0: threads in this process). The batches do not
        depend on it. Processor/tokenizer/source must be picklable when it is > 0.
      drop_remainder: drop (True) or pad with empty rows (False) a final partial batch.

    Returns:
      An ``IterDataset``; ``it = iter(ds)`` yields Batch dicts, ``it.stats`` holds the counters,
      ``it.get_state()`` / ``it.set_state(state)`` checkpoint and resume the exact stream.
    """
    shard_index = jax.process_index() if shard_index is None else shard_index
    shard_count = jax.process_count() if shard_count is None else shard_count
    _check_args(seq_buckets, batch_size, shard_index, shard_count, worker_count, tokenizer.pad_id)
    transform = ProcessExample(processor, tokenizer, template, max(seq_buckets), tokenize_fn)
    ds = grain.MapDataset.source(_SkipUnreadable(source)).seed(seed)
    if shuffle:
        ds = ds.shuffle()
    ds = ds.repeat(num_epochs).random_map(transform)
    ds = ds[shard_index::shard_count]
    elements = ds.to_iter_dataset(read_options)
    if worker_count > 0:
        if not flags.FLAGS.is_parsed():
            # grain 0.2.18's mp_prefetch reads an absl flag and fails when flags were never parsed
            # (outside absl.app: tests, notebooks); google/grain#1355, fixed upstream by #1362.
            flags.FLAGS.mark_as_parsed()
        elements = elements.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return PadBatchIterDataset(elements, batch_size=batch_size, max_views=processor.max_views,
                               tile_size=processor.tile_size, seq_buckets=seq_buckets,
                               pad_id=tokenizer.pad_id, drop_remainder=drop_remainder)
