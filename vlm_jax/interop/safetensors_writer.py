"""Streaming safetensors writer: one tensor in host memory at a time, sharded like ``save_pretrained``.

A safetensors file is ``u64 header length`` + JSON header (``{key: {dtype, shape, data_offsets}}``,
``__metadata__``) + the raw little-endian bytes of the tensors back to back. Shapes are known before
any value is fetched, so headers (and the shard split) are written first and each tensor's bytes are
produced by its ``fetch`` callback just before they are written.

Dtypes: ``float32`` (``F32``) or ``bfloat16`` (``BF16``, round-to-nearest-even of the float32 values through
``ml_dtypes``, as ``torch.Tensor.to(torch.bfloat16)`` rounds), one dtype per export (``WRITE_DTYPES``).

Layout (transformers ``save_pretrained``): one ``model.safetensors``, or, when the total exceeds
``max_shard_bytes``, ``model-0000i-of-0000n.safetensors`` files plus ``model.safetensors.index.json``
(``{"metadata": {"total_size": bytes}, "weight_map": {key: file}}``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
from collections.abc import Callable, Sequence

import ml_dtypes
import numpy as np

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# dtype name (``config.json`` "dtype") -> (safetensors dtype code, little-endian numpy dtype)
WRITE_DTYPES = {"float32": ("F32", np.dtype("<f4")), "bfloat16": ("BF16", np.dtype(ml_dtypes.bfloat16))}


def check_dtype(dtype: str) -> None:
    """Raise ``ValueError`` for a dtype the writer cannot write, naming the ones it can."""
    if dtype not in WRITE_DTYPES:
        raise ValueError(f"unsupported export dtype {dtype!r}; supported: {sorted(WRITE_DTYPES)}")


@dataclasses.dataclass(frozen=True)
class PlannedTensor:
    """A tensor to write: its checkpoint ``key``, ``shape``, a ``fetch()`` producing float32 values and the
    ``dtype`` it is stored in (a key of ``WRITE_DTYPES``)."""

    key: str
    shape: tuple[int, ...]
    fetch: Callable[[], np.ndarray]
    dtype: str = "float32"

    @property
    def nbytes(self) -> int:
        return WRITE_DTYPES[self.dtype][1].itemsize * math.prod(self.shape)


def split_shards(tensors: Sequence[PlannedTensor], max_shard_bytes: int) -> list[list[PlannedTensor]]:
    """Consecutive groups of at most ``max_shard_bytes`` (a larger tensor gets a shard of its own)."""
    if max_shard_bytes <= 0:
        raise ValueError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
    shards: list[list[PlannedTensor]] = [[]]
    size = 0
    for t in tensors:
        if shards[-1] and size + t.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += t.nbytes
    return shards


def _write_file(path: str, tensors: Sequence[PlannedTensor]) -> None:
    header, offset = {}, 0
    for t in tensors:
        header[t.key] = {"dtype": WRITE_DTYPES[t.dtype][0], "shape": list(t.shape),
                         "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the data section starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for t in tensors:
            value = np.ascontiguousarray(np.asarray(t.fetch(), np.float32).astype(WRITE_DTYPES[t.dtype][1]))
            if value.shape != t.shape:
                raise ValueError(f"{t.key}: fetched shape {value.shape} != planned {t.shape}")
            f.write(value.tobytes())


def write_safetensors(tensors: Sequence[PlannedTensor], out_dir: str, max_shard_bytes: int) -> list[str]:
    """Write ``tensors`` (sorted by key) into ``out_dir``; returns the written file names.

    Duplicate keys raise. Stale ``model*.safetensors`` / index files from an earlier export are removed
    first so the directory holds exactly one consistent checkpoint.
    """
    keys = [t.key for t in tensors]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"tensor keys written twice: {dup[:5]}")
    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(out_dir):
        if name.startswith("model") and (name.endswith(".safetensors") or name == INDEX_FILE):
            os.remove(os.path.join(out_dir, name))
    shards = split_shards(sorted(tensors, key=lambda t: t.key), max_shard_bytes)
    if len(shards) == 1:
        _write_file(os.path.join(out_dir, SINGLE_FILE), shards[0])
        return [SINGLE_FILE]
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {}
    for name, shard in zip(names, shards, strict=True):
        _write_file(os.path.join(out_dir, name), shard)
        weight_map.update({t.key: name for t in shard})
    index = {"metadata": {"total_size": sum(t.nbytes for t in tensors)}, "weight_map": weight_map}
    with open(os.path.join(out_dir, INDEX_FILE), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
    return names + [INDEX_FILE]
