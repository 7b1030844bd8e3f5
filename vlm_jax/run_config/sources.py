"""``config.data.source`` / ``config.data.eval_source``: one typed block per source kind, chosen by ``kind``::

    dict(kind="entitygrid", split="train", size=..., seed=0, canvas=448, ...)  # EntityGridQA's arguments
    dict(kind="llava_json", path=".../train.json", image_root=".../images")
    dict(kind="array_record", paths=(...,))
    dict(kind="tfds", name="...", split="train", data_dir=None)

``vlm_jax.run_config.build_data`` turns a block into the source object; keys of another kind are refused here.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, TypeAlias

from vlm_jax.config_util import as_tuples, check_block, check_fields, config_block, plain, unknown_value_message
from vlm_jax.data.entitygrid import EntityGridQA


def _entitygrid_source_config() -> type:
    """The ``entitygrid`` block: one field per argument of the generator ``EntityGridQA`` (spec/methods.md §4.3),
    with its names, types and defaults, so the block follows the generator. Values are checked by building it
    (cheap: no example is drawn)."""
    hints = typing.get_type_hints(EntityGridQA.__init__)
    fields = [(p.name, hints[p.name]) if p.default is p.empty else (p.name, hints[p.name], p.default)
              for p in inspect.signature(EntityGridQA).parameters.values()]

    def check(self) -> None:
        check_fields(self, "entitygrid source")
        try:
            EntityGridQA(**dataclasses.asdict(self))
        except ValueError as err:
            raise ValueError(f"entitygrid source: {err}") from None

    return dataclasses.make_dataclass("EntityGridSourceConfig", fields, frozen=True, namespace={
        "kind": "entitygrid", "__post_init__": check, "__module__": __name__,
        "__doc__": "Generated EntityGrid-QA: the arguments of ``vlm_jax.data.entitygrid.EntityGridQA``."})


EntityGridSourceConfig = _entitygrid_source_config()


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


SourceConfig: TypeAlias = EntityGridSourceConfig | LlavaJsonSourceConfig | ArrayRecordSourceConfig | TfdsSourceConfig
SOURCE_KINDS: dict[str, type] = {cls.kind: cls for cls in typing.get_args(SourceConfig)}


def source_from_dict(d: Mapping[str, Any], what: str = "config.data.source") -> SourceConfig:
    """The typed source of a block; an unknown kind or a key of another kind raises, naming ``what``."""
    d = dict(plain(d))
    kind = d.pop("kind", None)
    if kind not in SOURCE_KINDS:
        raise ValueError(unknown_value_message(f"{what}.kind", kind, SOURCE_KINDS))
    cls = SOURCE_KINDS[kind]
    d = check_block(cls, d, f"{what} (kind {kind!r})")
    d = as_tuples(d)  # lists (a config read back from JSON) as the tuples the fields hold
    if isinstance(d.get("paths"), str):
        d["paths"] = (d["paths"],)
    return cls(**d)


def source_block(kind: str, what: str = "config.data.source", **values: Any) -> dict[str, Any]:
    """The config-dict form of a source: every key of ``kind`` listed, ``None`` ones overridable."""
    if kind not in SOURCE_KINDS:
        raise ValueError(unknown_value_message(f"{what}.kind", kind, SOURCE_KINDS))
    return {"kind": kind, **config_block(SOURCE_KINDS[kind], f"{what} (kind {kind!r})", **values)}

