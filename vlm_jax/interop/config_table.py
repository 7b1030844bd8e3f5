"""Declarative config tables: an HF ``config.json`` (tower part) ↔ the fields of our tower config.

A :class:`ConfigTable` lists, for one checkpoint family, the :class:`Field` s that carry a value both ways,
the fields the family fixes on our side (a CLIP tower always has a CLS token) and on the HF side (written
on export), and the HF options we refuse to import (:class:`Refusal`). ``None`` in a config counts as
absent (transformers writes ``null`` for unset options), so the table's default applies.

Import reads a dict of our config fields; export writes the HF fields. Export is checked by reading the
written dict back (:func:`vlm_jax.interop.hf_config_export.hf_config`): a model setting the family cannot
express shows up there as a differing field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

_REQUIRED = object()


def hf_value(d: Mapping[str, Any], key: str, default: Any = _REQUIRED) -> Any:
    """``d[key]`` (``None`` counts as absent); ``default`` may be a function of ``d``."""
    if d.get(key) is not None:
        return d[key]
    if default is _REQUIRED:
        raise KeyError(f"config.json has no {key!r}")
    return default(d) if callable(default) else default


@dataclasses.dataclass(frozen=True)
class Field:
    """Our field ``ours`` ↔ HF field ``hf``: ``to_ours(hf value)`` on import, ``to_hf(our value)`` on export."""

    ours: str
    hf: str
    default: Any = _REQUIRED
    to_ours: Callable[[Any], Any] = lambda v: v
    to_hf: Callable[[Any], Any] = lambda v: v

    def read(self, d: Mapping[str, Any]) -> dict[str, Any]:
        return {self.ours: self.to_ours(hf_value(d, self.hf, self.default))}

    def write(self, cfg: Any) -> dict[str, Any]:
        return {self.hf: self.to_hf(getattr(cfg, self.ours))}


@dataclasses.dataclass(frozen=True)
class Compound:
    """Several fields that convert together (RoPE base + scaling ↔ ``rope_parameters``):
    ``read(hf dict) -> our fields``, ``write(our config) -> HF fields``."""

    read: Callable[[Mapping[str, Any]], dict[str, Any]]
    write: Callable[[Any], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Refusal:
    """An HF option we do not implement: import raises ``message`` unless ``allowed(value)``."""

    hf: str
    default: Any
    allowed: Callable[[Any], bool]
    message: str

    def check(self, d: Mapping[str, Any]) -> None:
        value = hf_value(d, self.hf, self.default)
        if not self.allowed(value):
            raise ValueError(self.message.format(value=value))


@dataclasses.dataclass(frozen=True)
class ConfigTable:
    """The config translation of one family (``model_type``)."""

    model_type: str
    fields: tuple[Field | Compound, ...]
    fixed_ours: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    fixed_hf: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    refused: tuple[Refusal, ...] = ()

    def to_ours(self, d: Mapping[str, Any]) -> dict[str, Any]:
        """Our config fields from an HF config dict; raises ``ValueError`` for a refused option."""
        for refusal in self.refused:
            refusal.check(d)
        out: dict[str, Any] = {}
        for f in self.fields:
            out.update(f.read(d))
        return {**out, **self.fixed_ours}

    def to_hf(self, cfg: Any) -> dict[str, Any]:
        """The HF config dict of our config ``cfg`` (``model_type`` first)."""
        out: dict[str, Any] = {"model_type": self.model_type, **self.fixed_hf}
        for f in self.fields:
            out.update(f.write(cfg))
        return out


def named(table: Mapping[str, str], what: str, error: type[Exception] = ValueError) -> Callable[[str], str]:
    """A converter through a name table that raises ``error`` naming ``what`` for an unknown name."""
    def convert(name: str) -> str:
        if name not in table:
            raise error(f"{what} {name!r} has no equivalent; known: {sorted(table)}")
        return table[name]
    return convert


# activation names: HF ``hidden_act`` / ``projector_hidden_act`` → ours, and ours → the spelling HF writes
ACT_FROM_HF = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh"}
ACT_TO_HF = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}
