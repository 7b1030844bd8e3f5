"""Random-access sources of raw examples (data contract; DESIGN.md "Grain", "TFDS").

Every source has ``__len__`` and ``__getitem__(i) -> raw example``
``{"id": str, "image": bytes | None, "conversations": [{"from", "value"}, ...], "meta": dict}``
and can be handed to ``grain.MapDataset.source``. A problem confined to one example (a missing
image file, an unreadable record) raises :class:`ExampleError`; the pipeline turns it into a
counted, skipped example instead of crashing. Problems with the whole source fail at construction.
"""

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from array_record.python.array_record_data_source import ArrayRecordDataSource

from vlm_jax.data.records import decode_example


class ExampleError(Exception):
    """One example cannot be read; ``reason`` is a short counter key (e.g. "missing_image")."""

    def __init__(self, reason: str, example_id: str, message: str):
        super().__init__(f"[{reason}] example {example_id!r}: {message}")
        self.reason = reason
        self.example_id = example_id


def _load_json_entries(path: str) -> list[dict[str, Any]]:
    """A LLaVA file: a JSON list of entries, or JSON Lines (one entry per non-empty line)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".jsonl"):
        entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        entries = json.loads(text)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"{path}: expected a list of example objects (LLaVA conversation format)")
    return entries


class LlavaJsonSource:
    """LLaVA conversation files: ``[{"id", "image": path relative to image_root, "conversations"}]``.

    The JSON is parsed once at construction; image bytes are read lazily in ``__getitem__``.
    Entries without "image" are text-only examples (``image=None``). A missing or unreadable image
    file raises :class:`ExampleError` for that index only.
    """

    def __init__(self, json_or_jsonl_path: str, image_root: str):
        self._path = os.fspath(json_or_jsonl_path)
        self._image_root = os.fspath(image_root)
        self._entries = _load_json_entries(self._path)

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int) -> dict[str, Any]:
        entry = self._entries[index]
        example_id = str(entry.get("id", f"{os.path.basename(self._path)}:{index}"))
        conversations = entry.get("conversations")
        if not isinstance(conversations, list):
            raise ExampleError("bad_record", example_id, "'conversations' must be a list")
        image = None
        relative = entry.get("image")
        if relative is not None:
            if not isinstance(relative, str):
                raise ExampleError("bad_record", example_id, f"'image' must be one path, got {relative!r}")
            image_path = os.path.join(self._image_root, relative)
            try:
                with open(image_path, "rb") as f:
                    image = f.read()
            except OSError as e:
                raise ExampleError("missing_image", example_id, f"{image_path}: {e.strerror}") from e
        meta = {k: v for k, v in entry.items() if k not in ("id", "image", "conversations")}
        return {"id": example_id, "image": image, "conversations": conversations, "meta": meta}

    def __repr__(self) -> str:
        return f"LlavaJsonSource({self._path!r}, image_root={self._image_root!r}, n={len(self)})"


class ArrayRecordSource:
    """Shards written by :func:`vlm_jax.data.convert.convert_llava_json` (format: ``records.py``).

    ``paths`` (one path or several) are read in the given order, so index i of the source is the
    i-th record of the concatenated shards.
    """

    def __init__(self, paths: str | Sequence[str]):
        self._paths = [os.fspath(paths)] if isinstance(paths, (str, os.PathLike)) else [
            os.fspath(p) for p in paths]
        missing = [p for p in self._paths if not os.path.exists(p)]
        if not self._paths or missing:
            raise FileNotFoundError(f"ArrayRecord shards not found: {missing or 'no paths given'}")
        self._records = ArrayRecordDataSource(self._paths)

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        data = self._records[index]
        try:
            return decode_example(data)
        except ValueError as e:
            raise ExampleError("bad_record", f"record {index}", str(e)) from e

    def __repr__(self) -> str:
        return f"ArrayRecordSource({len(self._paths)} shards, n={len(self)})"


def tfds_features():
    """The TFDS feature schema :class:`TfdsSource` reads by default (TensorFlow-free features).

    ``image`` holds the encoded file bytes (``b""`` for text-only examples), ``conversations``
    and ``meta`` are JSON text. TFDS's ``Image`` feature is avoided: its encoder needs TensorFlow.
    """
    import tensorflow_datasets as tfds

    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),
        "image": tfds.features.Tensor(shape=(), dtype=np.object_),
        "conversations": tfds.features.Text(),
        "meta": tfds.features.Text(),
    })


def _as_text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def tfds_to_raw_example(features: dict[str, Any]) -> dict[str, Any]:
    """Maps one decoded example of the :func:`tfds_features` schema to a raw example."""
    image = features["image"]
    return {
        "id": _as_text(features["id"]),
        "image": bytes(image) if len(image) else None,
        "conversations": json.loads(_as_text(features["conversations"])),
        "meta": json.loads(_as_text(features["meta"]) or "{}"),
    }


class TfdsSource:
    """A prepared TFDS dataset stored as ArrayRecord, read through ``tfds.data_source`` (no TF).

    ``to_example`` maps one decoded TFDS example (dict of numpy values/bytes) to a raw example;
    the default expects the :func:`tfds_features` schema.
    """

    def __init__(self, name: str, split: str, data_dir: str | None = None, *,
                 to_example: Callable[[dict[str, Any]], dict[str, Any]] = tfds_to_raw_example):
        import tensorflow_datasets as tfds

        self._name, self._split = name, split
        self._source = tfds.data_source(name, split=split, data_dir=data_dir)
        self._to_example = to_example

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._to_example(self._source[index])

    def __repr__(self) -> str:
        return f"TfdsSource({self._name!r}, split={self._split!r}, n={len(self)})"
