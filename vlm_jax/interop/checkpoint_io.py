"""Streaming access to Hugging Face safetensors checkpoints and checked assignment into NNX modules.

Only safetensors are read (never pickle). Tensors are read one at a time, so converting a 7B model
never holds two full copies in host memory. Key names are normalised across the three naming
schemes transformers uses (``spec/parity.md`` §1.3):

* hub / v4:        ``vision_tower.vision_model.encoder…``, ``language_model.model.layers…``,
                   ``language_model.lm_head.weight``
* v5 in memory:    ``model.vision_tower.encoder…``, ``model.language_model.layers…``, ``lm_head.weight``
* v5 on disk:      ``vision_tower.encoder…``, ``language_model.model.layers…``, ``language_model.lm_head.weight``

The canonical form is the v5 on-disk one; tower loaders receive a :class:`TensorSource` view with
their prefix stripped (vision: ``encoder.layers.0…``; LLM: ``model.layers.0…``, ``lm_head.weight``).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx

from vlm_jax.interop.errors import CheckpointError

_VLM_TOP = ("vision_tower.", "language_model.", "multi_modal_projector.", "image_newline")


def canonical_key(key: str) -> str:
    """Normalise a transformers state-dict key to the v5 on-disk naming (a standalone vision model's
    ``vision_model.`` prefix dropped)."""
    if key.startswith("model.") and key[len("model."):].startswith(_VLM_TOP):
        key = key[len("model."):]
        if key.startswith("language_model.") and not key.startswith(("language_model.model.",
                                                                      "language_model.lm_head.")):
            key = "language_model.model." + key[len("language_model."):]
    if key.startswith("vision_tower.vision_model."):
        key = "vision_tower." + key[len("vision_tower.vision_model."):]
    if key.startswith("vision_model."):
        key = key[len("vision_model."):]
    return key


def canonical_vlm_key(key: str) -> str:
    """:func:`canonical_key` for a transformers VLM: a top-level ``lm_head.*`` (v5 in-memory naming) belongs
    to ``language_model.``."""
    key = canonical_key(key)
    return "language_model." + key if key.startswith("lm_head.") else key


def _read_header(path: str) -> tuple[dict, int]:
    """The JSON header of a safetensors file and the byte offset where its data starts."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n)), 8 + n


_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16, "F64": np.float64,
           "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


class TensorSource:
    """Read-only, lazy mapping ``canonical key -> np.ndarray`` over one or more safetensors files.

    Tracks which keys were read so :meth:`check_all_used` can report unexpected tensors.
    """

    def __init__(self, entries: dict[str, tuple[str, dict]], prefix: str = "", used: set | None = None):
        self._entries = entries  # full canonical key -> (file, header entry)
        self._prefix = prefix
        self._used = set() if used is None else used

    @classmethod
    def open(cls, path: str, *, rename: Callable[[str], str] = canonical_key) -> TensorSource:
        """Open a ``save_pretrained`` directory (single or sharded) or one ``.safetensors`` file; keys are
        stored as ``rename(key)`` (default: :func:`canonical_key`; VLMs: their family's naming)."""
        if os.path.isdir(path):
            files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".safetensors"))
        else:
            files = [path]
        if not files:
            raise CheckpointError(f"no .safetensors files in {path} (pickle checkpoints are not read)")
        entries: dict[str, tuple[str, dict]] = {}
        for f in files:
            header, offset = _read_header(f)
            for k, meta in header.items():
                if k == "__metadata__":
                    continue
                key = rename(k)
                if key in entries:
                    raise CheckpointError(f"tensor {key!r} appears twice (as {k!r} in {f})")
                entries[key] = (f, dict(meta, base=offset))
        return cls(entries)

    def sub(self, prefix: str) -> TensorSource:
        """A view of the keys under ``prefix`` (given relative to this view)."""
        return TensorSource(self._entries, self._prefix + prefix, self._used)

    def keys(self) -> list[str]:
        p = self._prefix
        return sorted(k[len(p):] for k in self._entries if k.startswith(p))

    def __contains__(self, key: str) -> bool:
        return self._prefix + key in self._entries

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._entry(key)[1]["shape"])

    def _entry(self, key: str):
        full = self._prefix + key
        if full not in self._entries:
            raise CheckpointError(f"missing tensor {full!r} in checkpoint")
        return self._entries[full]

    def get(self, key: str, dtype=np.float32) -> np.ndarray:
        """Read one tensor (memory-mapped slice of the file) as ``dtype``."""
        f, meta = self._entry(key)
        self._used.add(self._prefix + key)
        start, end = meta["data_offsets"]
        raw = np.memmap(f, dtype=np.uint8, mode="r", offset=meta["base"] + start, shape=(end - start,))
        arr = np.frombuffer(raw, dtype=_DTYPES[meta["dtype"]]).reshape(meta["shape"])
        return arr.astype(dtype) if dtype is not None else np.array(arr)

    def was_read(self, key: str) -> bool:
        return self._prefix + key in self._used

    def check_all_used(self, ignore: Callable[[str], bool] = lambda key: False) -> None:
        """Raise if any tensor under this view's prefix was never read (unexpected tensors); ``ignore(key)``
        (key relative to the view) names tensors that are knowingly dropped."""
        p = self._prefix
        left = [k for k in self._entries if k.startswith(p) and k not in self._used and not ignore(k[len(p):])]
        if left:
            raise CheckpointError(f"{len(left)} unexpected tensors in checkpoint, e.g. {sorted(left)[:5]}")


def read_hf_config(path: str) -> dict[str, Any]:
    """The ``config.json`` dict of a checkpoint directory."""
    with open(os.path.join(path, "config.json")) as f:
        return json.load(f)


def text_vocab_size(path: str) -> int:
    """Vocabulary rows of the LLM of a checkpoint directory (``text_config`` of llava-hf / InternVL,
    ``llm_config`` of ``internvl_chat``, or the top level of an LLM or an original LLaVA checkpoint)."""
    cfg = read_hf_config(path)
    for key in ("text_config", "llm_config"):
        if isinstance(cfg.get(key), dict) and "vocab_size" in cfg[key]:
            return int(cfg[key]["vocab_size"])
    if "vocab_size" not in cfg:
        raise ValueError(f"{os.path.join(path, 'config.json')} gives no vocab_size for its language model")
    return int(cfg["vocab_size"])


def assign(variable: nnx.Variable, value: np.ndarray, name: str) -> None:
    """Set ``variable`` to ``value`` after checking the shape; keeps the variable's dtype/sharding.

    ``variable`` may be abstract (``nnx.eval_shape``): big models are filled without a random init.
    """
    target = variable.get_value()
    if tuple(value.shape) != tuple(target.shape):
        raise CheckpointError(f"{name}: checkpoint shape {tuple(value.shape)} != model shape {tuple(target.shape)}")
    sharding = getattr(target, "sharding", None)
    arr = jnp.asarray(value, dtype=target.dtype)
    variable.set_value(jax.device_put(arr, sharding) if sharding is not None else arr)


def check_all_set(module: nnx.Module) -> None:
    """Raise if a parameter of an abstractly created ``module`` (``nnx.eval_shape``) was never loaded."""
    unset = [jax.tree_util.keystr(p) for p, leaf in jax.tree_util.tree_leaves_with_path(nnx.state(module))
             if isinstance(leaf, jax.ShapeDtypeStruct)]
    if unset:
        raise CheckpointError(f"{len(unset)} parameters not set from the checkpoint, e.g. {unset[:5]}")
