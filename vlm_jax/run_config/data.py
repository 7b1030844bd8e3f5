"""``config.data`` and ``config.datasets.<name>``: the data blocks a recipe stage reads (``Stage.data``), typed and
validated when the config is loaded (``vlm_jax.run_config.build_data`` builds the pipeline from them).

``config.data`` is the run's data: the tiling, tokenizer, evaluation set and Grain workers every stage shares, and
the default stream (``Stage.data == "default"``). ``config.datasets`` names further streams (e.g. the caption set of
an alignment stage)::

    datasets=dict(captions=dict(source=dict(kind="llava_json", ...), template="plain", batch_size=256, accum=2,
                                seq_buckets=(1024, 2048)))
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from typing import Any

from vlm_jax.config_util import as_tuples, check_block, check_fields, plain, unknown_value_message
from vlm_jax.data.templates import CHECKPOINT_TEMPLATE, TEMPLATES
from vlm_jax.run_config.sources import SourceConfig, source_from_dict

DEFAULT_STREAM = "default"
"""The ``Stage.data`` name of ``config.data``'s own stream."""


def _increasing(buckets: tuple[int, ...]) -> bool:
    return bool(buckets) and buckets[0] > 0 and all(a < b for a, b in zip(buckets, buckets[1:]))


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataStream:
    """The examples of a recipe stage: a ``config.datasets.<name>`` block (``config.data`` holds one too).

    Attributes:
      source: the training examples (:mod:`vlm_jax.run_config.sources`).
      template: chat template name (``vlm_jax.data.templates.TEMPLATES``, or ``"checkpoint"``).
      batch_size: global batch, examples per optimizer step over all hosts (> 0; each host reads
        ``batch_size / hosts``); a multiple of ``accum``.
      seq_buckets: allowed padded text lengths ``L``, positive and strictly increasing; longer examples are skipped.
      accum: micro-batches per optimizer step (gradient accumulation, >= 1).
      what: (init only) the block's name in messages, e.g. ``"config.datasets.captions"``.
    """

    source: SourceConfig
    template: str
    batch_size: int
    seq_buckets: tuple[int, ...]
    accum: int = 1
    what: dataclasses.InitVar[str] = "config.data"

    def __post_init__(self, what: str):
        check_fields(self, what, batch_size=(lambda v: v > 0, "> 0"), accum=(lambda v: v > 0, "> 0"),
                     seq_buckets=(_increasing, "positive and strictly increasing"))
        if self.batch_size % self.accum:
            raise ValueError(f"{what}.batch_size={self.batch_size} is not divisible by {what}.accum={self.accum}")
        if self.template not in (*TEMPLATES, CHECKPOINT_TEMPLATE):
            raise ValueError(unknown_value_message(f"{what}.template", self.template,
                                                   (*TEMPLATES, CHECKPOINT_TEMPLATE)))

    @classmethod
    def typed_fields(cls, d: Mapping[str, Any], what: str) -> dict[str, Any]:
        """The keyword arguments of ``cls`` from its config dict: keys checked, sources typed, lists as tuples."""
        d = check_block(cls, plain(d), what)
        d["source"] = source_from_dict(d["source"], f"{what}.source")
        d["seq_buckets"] = tuple(d["seq_buckets"])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], what: str = "config.data") -> DataStream:
        """From the block's ConfigDict (or a dict); unknown keys raise with the closest valid ones."""
        return cls(**cls.typed_fields(d, what), what=what)

    def identity(self) -> dict[str, Any]:
        """The stream's own fields as plain data (what its batches depend on, beside tiling and tokenizer)."""
        source = {"kind": self.source.kind, **dataclasses.asdict(self.source)}
        return {"source": source, **{f.name: getattr(self, f.name) for f in dataclasses.fields(DataStream)
                                     if f.name != "source"}}


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataConfig(DataStream):
    """The ``config.data`` block: the default stream (:class:`DataStream`'s fields) and what every stage shares.

    Attributes:
      tiling: the image processor's block (``kind`` + the tiler's options; ``vlm_jax.data.processor``), read-only.
      eval_source: held-out examples for the final evaluation (None: none).
      tokenizer: a checkpoint directory or tokenizer file; empty for the embedded default vocabulary.
      worker_count: Grain worker processes (0: threads in this process).
    """

    tiling: Mapping[str, Any]
    eval_source: SourceConfig | None = None
    tokenizer: str = ""
    worker_count: int = 0

    def __post_init__(self, what: str):
        super().__post_init__(what)
        check_fields(self, what, worker_count=(lambda v: v >= 0, ">= 0"))
        if not isinstance(self.tiling, Mapping) or not isinstance(self.tiling.get("kind"), str):
            raise ValueError(f"{what}.tiling must be a block with a 'kind' (the tiler), got {self.tiling!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], what: str = "config.data") -> DataConfig:
        """From the ``config.data`` ConfigDict (or a dict); unknown keys raise with the closest valid ones."""
        d = cls.typed_fields(d, what)
        if d.get("eval_source") is not None:
            d["eval_source"] = source_from_dict(d["eval_source"], f"{what}.eval_source")
        d["tiling"] = as_tuples(d["tiling"], types.MappingProxyType)
        return cls(**d, what=what)
