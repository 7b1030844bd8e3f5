"""Build sources, the tokenizer and the train dataset from a ``config.data`` block.

``config.data.source`` (and ``eval_source``) is one of::

    dict(kind="entitygrid", split="train", size=..., seed=0, canvas=448, n_entities=(1, 2))
    dict(kind="llava_json", path=".../train.json", image_root=".../images")
    dict(kind="array_record", paths=[...])
    dict(kind="tfds", name="...", split="train", data_dir=None)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vlm_jax.data.entitygrid import EntityGridQA
from vlm_jax.data.pipeline import make_dataset
from vlm_jax.data.sources import ArrayRecordSource, LlavaJsonSource, TfdsSource
from vlm_jax.data.tokenizer import Tokenizer, default_tokenizer, load_tokenizer

_SOURCES = {
    "entitygrid": lambda c: EntityGridQA(**c),
    "llava_json": lambda c: LlavaJsonSource(c["path"], c["image_root"]),
    "array_record": lambda c: ArrayRecordSource(list(c["paths"])),
    "tfds": lambda c: TfdsSource(c["name"], c["split"], c.get("data_dir")),
}


def build_source(cfg: Mapping[str, Any]):
    cfg = dict(cfg)
    kind = cfg.pop("kind")
    if kind not in _SOURCES:
        raise ValueError(f"unknown data source kind {kind!r}; known: {sorted(_SOURCES)}")
    if kind == "entitygrid" and "n_entities" in cfg:
        cfg["n_entities"] = tuple(cfg["n_entities"]) if not isinstance(cfg["n_entities"], int) else cfg["n_entities"]
    return _SOURCES[kind](cfg)


def build_tokenizer(cfg: Mapping[str, Any], cache_dir: str) -> Tokenizer:
    """``cfg.tokenizer``: a checkpoint directory or tokenizer file (:func:`~vlm_jax.data.tokenizer.load_tokenizer`),
    or empty for the embedded default (trained, cached)."""
    path = cfg.get("tokenizer", "")
    return load_tokenizer(path) if path else default_tokenizer(cache_dir)


def build_train_dataset(cfg: Mapping[str, Any], processor, tokenizer, seed: int):
    """The repeating, shuffled, per-host train pipeline of ``cfg.source``."""
    return make_dataset(build_source(cfg["source"]), processor=processor, tokenizer=tokenizer,
                        template=cfg["template"], batch_size=cfg["batch_size"], seq_buckets=list(cfg["seq_buckets"]),
                        seed=seed, worker_count=cfg.get("worker_count", 0))
