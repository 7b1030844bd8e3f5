"""Build sources, the tokenizer and a stage's train dataset from the data blocks (the bridge from the typed
config to :mod:`vlm_jax.data`, which never imports the config layer): :class:`~vlm_jax.run_config.DataConfig`,
:class:`~vlm_jax.run_config.DataStream` and the source kinds of :mod:`vlm_jax.run_config.sources`, typed or as the
ConfigDict / dict they are read from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from vlm_jax.data.entitygrid import EntityGridQA
from vlm_jax.data.pipeline import make_dataset
from vlm_jax.data.sources import ArrayRecordSource, LlavaJsonSource, TfdsSource
from vlm_jax.data.tokenizer import Tokenizer, default_tokenizer, load_tokenizer
from vlm_jax.run_config import DataConfig, DataStream, SourceConfig, source_from_dict
from vlm_jax.run_config.sources import (
    ArrayRecordSourceConfig,
    EntityGridSourceConfig,
    LlavaJsonSourceConfig,
    TfdsSourceConfig,
)

_SOURCES = {
    EntityGridSourceConfig: lambda c: EntityGridQA(**dataclasses.asdict(c)),
    LlavaJsonSourceConfig: lambda c: LlavaJsonSource(c.path, c.image_root),
    ArrayRecordSourceConfig: lambda c: ArrayRecordSource(list(c.paths)),
    TfdsSourceConfig: lambda c: TfdsSource(c.name, c.split, c.data_dir),
}


def _typed_data(cfg: DataConfig | Mapping[str, Any]) -> DataConfig:
    return cfg if isinstance(cfg, DataConfig) else DataConfig.from_dict(cfg)


def build_source(cfg: SourceConfig | Mapping[str, Any]):
    """The random-access source of a ``config.data.source`` block (unknown kinds and keys raise)."""
    source = cfg if isinstance(cfg, tuple(_SOURCES)) else source_from_dict(cfg)
    return _SOURCES[type(source)](source)


def build_tokenizer(cfg: DataConfig | Mapping[str, Any], cache_dir: str) -> Tokenizer:
    """``cfg.tokenizer``: a checkpoint directory or tokenizer file (:func:`~vlm_jax.data.tokenizer.load_tokenizer`),
    or empty for the embedded default (trained, cached)."""
    path = _typed_data(cfg).tokenizer
    return load_tokenizer(path) if path else default_tokenizer(cache_dir)


def per_host_batch(stream: DataStream, hosts: int) -> int:
    """Examples per host and step: the block's global batch split over the ``hosts`` processes (it must divide)."""
    if stream.batch_size % hosts:
        raise ValueError(f"global batch size {stream.batch_size} is not divisible by the {hosts} hosts")
    return stream.batch_size // hosts


def build_train_dataset(stream: DataStream, processor, tokenizer, *, seed: int, hosts: int, worker_count: int = 0):
    """The repeating, shuffled train pipeline of a stage's data block on this host (:func:`per_host_batch`)."""
    return make_dataset(build_source(stream.source), processor=processor, tokenizer=tokenizer,
                        template=stream.template, batch_size=per_host_batch(stream, hosts),
                        seq_buckets=list(stream.seq_buckets), seed=seed, worker_count=worker_count)
