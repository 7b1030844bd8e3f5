"""``config.data``: sources, tiling, tokenizer, chat template and batching, typed and validated when the config is
loaded (``vlm_jax.run_config.build_data`` builds the pipeline from it)."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from typing import Any

from vlm_jax.config_util import as_tuples, check_block, check_fields, plain, unknown_value_message
from vlm_jax.data.templates import CHECKPOINT_TEMPLATE, TEMPLATES
from vlm_jax.run_config.sources import SourceConfig, source_from_dict


def _increasing(buckets: tuple[int, ...]) -> bool:
    return bool(buckets) and buckets[0] > 0 and all(a < b for a, b in zip(buckets, buckets[1:]))


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The ``config.data`` block.

    Attributes:
      source: the training examples (:mod:`vlm_jax.run_config.sources`).
      tiling: the image processor's block (``kind`` + the tiler's options; ``vlm_jax.data.processor``), read-only.
      template: chat template name (``vlm_jax.data.templates.TEMPLATES``).
      batch_size: examples per host and step (> 0); the global batch is ``batch_size × hosts``.
      seq_buckets: allowed padded text lengths ``L``, positive and strictly increasing; longer examples are skipped.
      eval_source: held-out examples for the final evaluation (None: none).
      tokenizer: SentencePiece model path; empty for the embedded default vocabulary.
      worker_count: Grain worker processes (0: threads in this process).
    """

    source: SourceConfig
    tiling: Mapping[str, Any]
    template: str
    batch_size: int
    seq_buckets: tuple[int, ...]
    eval_source: SourceConfig | None = None
    tokenizer: str = ""
    worker_count: int = 0

    def __post_init__(self):
        check_fields(self, "config.data", batch_size=(lambda v: v > 0, "> 0"),
                     seq_buckets=(_increasing, "positive and strictly increasing"),
                     worker_count=(lambda v: v >= 0, ">= 0"))
        if self.template not in (*TEMPLATES, CHECKPOINT_TEMPLATE):
            raise ValueError(unknown_value_message("config.data.template", self.template,
                                                   (*TEMPLATES, CHECKPOINT_TEMPLATE)))
        if not isinstance(self.tiling, Mapping) or not isinstance(self.tiling.get("kind"), str):
            raise ValueError(f"config.data.tiling must be a block with a 'kind' (the tiler), got {self.tiling!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DataConfig:
        """From the ``config.data`` ConfigDict (or a dict); unknown keys raise with the closest valid ones."""
        d = check_block(cls, plain(d), "config.data")
        d["source"] = source_from_dict(d["source"], "config.data.source")
        if d.get("eval_source") is not None:
            d["eval_source"] = source_from_dict(d["eval_source"], "config.data.eval_source")
        d["tiling"] = as_tuples(d["tiling"], types.MappingProxyType)
        d["seq_buckets"] = tuple(d["seq_buckets"])
        return cls(**d)
