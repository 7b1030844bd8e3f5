"""Dropping bad examples, batching and padding to fixed shapes (data contract "Batch"; DESIGN.md
"Static shapes": tiles padded to N_max with ``tile_mask``, text padded to a few length buckets).

:class:`PadBatchIterDataset` is the last stage of the pipeline and runs in the main process. It
pulls processed examples, drops the skip markers (counting them per reason in
:class:`PipelineStats` and logging the example id), and pads ``batch_size`` good examples to

  pixels float32 [B, N_max, T, T, 3]; tile_mask bool [B, N_max]; grid int32 [B, 2];
  orig_size int32 [B, 2]; tokens int32 [B, L]; loss_mask / image_slots / prompt_mask / valid bool [B, L]

with L the smallest bucket >= the longest example of the batch. Its iterator state holds the
parent state and the counters, so a restored iterator continues the same stream and the same counts.
"""

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

log = logging.getLogger(__name__)

SKIP_REASON = "skip_reason"
TEXT_KEYS = ("tokens", "loss_mask", "image_slots", "prompt_mask")


def skip_marker(example_id: str, reason: str, detail: str) -> dict[str, str]:
    """The element that stands for a bad example until :class:`PadBatchIterDataset` drops it."""
    return {"id": example_id, SKIP_REASON: reason, "detail": detail}


@dataclasses.dataclass
class PipelineStats:
    """Counters a trainer can log: batches/examples emitted and bad examples skipped per reason."""

    batches: int = 0
    examples: int = 0
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def as_dict(self) -> dict[str, Any]:
        """Flat, JSON-able view (also the checkpointed form): ``{"skipped/<reason>": n, ...}``."""
        flat = {"batches": self.batches, "examples": self.examples}
        flat.update({f"skipped/{reason}": n for reason, n in sorted(self.skipped.items())})
        return flat

    @classmethod
    def from_dict(cls, flat: dict[str, Any]) -> "PipelineStats":
        skipped = {k.split("/", 1)[1]: int(v) for k, v in flat.items() if k.startswith("skipped/")}
        return cls(batches=int(flat["batches"]), examples=int(flat["examples"]), skipped=skipped)


def choose_bucket(length: int, seq_buckets: Sequence[int]) -> int:
    """Smallest bucket >= ``length``; ValueError when the text is longer than every bucket."""
    for bucket in seq_buckets:
        if bucket >= length:
            return bucket
    raise ValueError(f"sequence length {length} exceeds the largest bucket {max(seq_buckets)}")


def pad_batch(examples: Sequence[dict[str, Any]], *, batch_size: int, max_views: int,
              tile_size: int, seq_buckets: Sequence[int], pad_id: int) -> dict[str, np.ndarray]:
    """Stacks processed examples into one fixed-shape Batch (module docstring for the shapes).

    Each example holds ``pixels`` [n, T, T, 3] (n <= max_views), ``grid`` [2], ``orig_size`` [2] and
    the 1-D text arrays of ``TEXT_KEYS`` (length <= the largest bucket). Fewer than ``batch_size``
    examples (a final partial batch) leave whole rows of padding: tile_mask and valid all False.
    """
    if not 0 < len(examples) <= batch_size:
        raise ValueError(f"need 1..{batch_size} examples, got {len(examples)}")
    length = choose_bucket(max(len(e["tokens"]) for e in examples), seq_buckets)
    batch = {
        "pixels": np.zeros((batch_size, max_views, tile_size, tile_size, 3), np.float32),
        "tile_mask": np.zeros((batch_size, max_views), bool),
        "grid": np.ones((batch_size, 2), np.int32),
        "orig_size": np.zeros((batch_size, 2), np.int32),
        "tokens": np.full((batch_size, length), pad_id, np.int32),
        "loss_mask": np.zeros((batch_size, length), bool),
        "image_slots": np.zeros((batch_size, length), bool),
        "prompt_mask": np.zeros((batch_size, length), bool),
        "valid": np.zeros((batch_size, length), bool),
    }
    for row, example in enumerate(examples):
        pixels = example["pixels"]
        if pixels.ndim != 4 or pixels.shape[0] > max_views or pixels.shape[1:] != (
                tile_size, tile_size, 3):
            raise ValueError(f"example {example['id']!r}: pixels {pixels.shape} do not fit "
                             f"[<= {max_views}, {tile_size}, {tile_size}, 3]")
        n_views, n_text = pixels.shape[0], len(example["tokens"])
        batch["pixels"][row, :n_views] = pixels
        batch["tile_mask"][row, :n_views] = True
        batch["grid"][row] = example["grid"]
        batch["orig_size"][row] = example["orig_size"]
        for key in TEXT_KEYS:
            batch[key][row, :n_text] = example[key]
        batch["valid"][row, :n_text] = True
    return batch


class _PadBatchIterator(grain.DatasetIterator):
    """Iterator of :class:`PadBatchIterDataset`; ``stats`` is its live :class:`PipelineStats`."""

    def __init__(self, parent: grain.DatasetIterator, config: "PadBatchIterDataset"):
        super().__init__(parent)
        self._config = config
        self.stats = PipelineStats()

    def _skip(self, marker: dict[str, str]) -> None:
        reason = marker[SKIP_REASON]
        self.stats.skipped[reason] = self.stats.skipped.get(reason, 0) + 1
        log.warning("skipping example %r (%s): %s", marker["id"], reason, marker["detail"])

    def __next__(self) -> dict[str, np.ndarray]:
        cfg = self._config
        good, skipped_in_a_row = [], 0
        while len(good) < cfg.batch_size:
            try:
                element = next(self._parent)
            except StopIteration:
                break
            if SKIP_REASON in element:
                self._skip(element)
                skipped_in_a_row += 1
                if skipped_in_a_row >= cfg.max_consecutive_skips:
                    raise RuntimeError(
                        f"{skipped_in_a_row} bad examples in a row, last: {element}; counts so far "
                        f"{self.stats.skipped}. Check the data and the processor/tokenizer.")
            else:
                good.append(element)
                skipped_in_a_row = 0
        if not good or (cfg.drop_remainder and len(good) < cfg.batch_size):
            raise StopIteration
        batch = pad_batch(good, batch_size=cfg.batch_size, max_views=cfg.max_views,
                          tile_size=cfg.tile_size, seq_buckets=cfg.seq_buckets, pad_id=cfg.pad_id)
        self.stats.batches += 1
        self.stats.examples += len(good)
        return batch

    def get_state(self) -> dict[str, Any]:
        return {"parent": self._parent.get_state(), "stats": self.stats.as_dict()}

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(state["parent"])
        self.stats = PipelineStats.from_dict(state["stats"])


class PadBatchIterDataset(grain.IterDataset):
    """Drops skip markers (counted), batches ``batch_size`` good examples, pads to fixed shapes.

    ``drop_remainder=False`` pads a final partial batch with empty rows instead of dropping it.
    ``max_consecutive_skips`` bad examples in a row raise (a broken processor or data set would
    otherwise loop forever on a repeated dataset).
    """

    def __init__(self, parent: grain.IterDataset, *, batch_size: int, max_views: int,
                 tile_size: int, seq_buckets: Sequence[int], pad_id: int,
                 drop_remainder: bool = True, max_consecutive_skips: int = 10_000):
        super().__init__(parent)
        self.batch_size, self.max_views, self.tile_size = batch_size, max_views, tile_size
        self.seq_buckets, self.pad_id = tuple(seq_buckets), pad_id
        self.drop_remainder, self.max_consecutive_skips = drop_remainder, max_consecutive_skips

    def __iter__(self) -> _PadBatchIterator:
        return _PadBatchIterator(self._parent.__iter__(), self)

    def __str__(self) -> str:
        return f"PadBatchIterDataset(batch_size={self.batch_size}, buckets={self.seq_buckets})"

