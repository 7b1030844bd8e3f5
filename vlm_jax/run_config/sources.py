"""``config.data.source`` / ``config.data.eval_source``: one typed block per source kind, chosen by ``kind``::

    dict(kind="entitygrid", split="train", size=..., seed=0, canvas=448, n_entities=(1, 2))
    dict(kind="llava_json", path=".../train.json", image_root=".../images")
    dict(kind="array_record", paths=(...,))
    dict(kind="tfds", name="...", split="train", data_dir=None)

``vlm_jax.data.build`` turns a block into the source object; keys of another kind are refused here.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

from vlm_jax.config_util import check_block, check_fields, config_block, plain, unknown_value_message

_POSITIVE = (lambda v: v > 0, "> 0")
_NON_NEGATIVE = (lambda v: v >= 0, ">= 0")


@dataclasses.dataclass(frozen=True)
class EntityGridSourceConfig:
    """Generated EntityGrid-QA (spec/methods.md §4.3, ``vlm_jax.data.entitygrid.EntityGridQA``): ``size``
    examples of ``split``, ``canvas``-pixel images holding ``n_entities`` entities (a choice per example)."""

    kind: ClassVar[str] = "entitygrid"
    split: str
    size: int
    seed: int = 0
    canvas: int = 448
    n_entities: tuple[int, ...] = (1, 2)

    def __post_init__(self):
        check_fields(self, "entitygrid source", size=_NON_NEGATIVE, seed=_NON_NEGATIVE,
                     canvas=(lambda v: v >= 32, ">= 32"),
                     n_entities=(lambda v: bool(v) and set(v) <= {1, 2}, "a non-empty tuple of 1 and/or 2"))


@dataclasses.dataclass(frozen=True)
class LlavaJsonSourceConfig:
    """A LLaVA-style conversation JSON / JSONL file; image paths are relative to ``image_root``."""

    kind: ClassVar[str] = "llava_json"
    path: str
    image_root: str

    def __post_init__(self):
        check_fields(self, "llava_json source")


@dataclasses.dataclass(frozen=True)
class ArrayRecordSourceConfig:
    """ArrayRecord shards written by ``vlm-jax convert-data``."""

    kind: ClassVar[str] = "array_record"
    paths: tuple[str, ...]

    def __post_init__(self):
        check_fields(self, "array_record source", paths=(bool, "non-empty"))


@dataclasses.dataclass(frozen=True)
class TfdsSourceConfig:
    """A prepared TFDS dataset read through ``tfds.data_source`` (ArrayRecord, no TensorFlow)."""

    kind: ClassVar[str] = "tfds"
    name: str
    split: str
    data_dir: str | None = None

    def __post_init__(self):
        check_fields(self, "tfds source")


SourceConfig = EntityGridSourceConfig | LlavaJsonSourceConfig | ArrayRecordSourceConfig | TfdsSourceConfig
SOURCE_KINDS: dict[str, type] = {cls.kind: cls for cls in typing.get_args(SourceConfig)}
_TUPLE_FIELDS = ("n_entities", "paths")


def source_from_dict(d: Mapping[str, Any], what: str = "config.data.source") -> SourceConfig:
    """The typed source of a block; an unknown kind or a key of another kind raises, naming ``what``."""
    d = plain(d)
    kind = d.pop("kind", None)
    if kind not in SOURCE_KINDS:
        raise ValueError(unknown_value_message(f"{what}.kind", kind, SOURCE_KINDS))
    cls = SOURCE_KINDS[kind]
    d = check_block(cls, d, f"{what} (kind {kind!r})")
    for name in _TUPLE_FIELDS:
        if name in d:
            d[name] = (d[name],) if isinstance(d[name], (int, str)) else tuple(d[name])
    return cls(**d)


def source_block(kind: str, what: str = "config.data.source", **values: Any) -> dict[str, Any]:
    """The config-dict form of a source: every key of ``kind`` listed, ``None`` ones overridable."""
    if kind not in SOURCE_KINDS:
        raise ValueError(unknown_value_message(f"{what}.kind", kind, SOURCE_KINDS))
    return {"kind": kind, **config_block(SOURCE_KINDS[kind], f"{what} (kind {kind!r})", **values)}


def source_dict(source: SourceConfig) -> dict[str, Any]:
    """``source`` back as a plain config dict (with its ``kind``)."""
    return {"kind": source.kind, **dataclasses.asdict(source)}
