"""Strict config construction: a key that is not a field of the target dataclass is an error at load time, with
the closest valid keys as a hint; and the ml_collections form of a dataclass block, in which every key (those
whose default is ``None`` included) can be overridden from the command line.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ml_collections import ConfigDict
from ml_collections.config_dict import placeholder

_SCALARS = (bool, int, float, str, tuple)


def closest_keys(key: str, known: Iterable[str]) -> list[str]:
    """The valid keys closest to a mistyped ``key`` (difflib ratio >= 0.6, at most three)."""
    return difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.6)


def unknown_keys_message(what: str, unknown: Iterable[str], known: Iterable[str]) -> str:
    """``unknown config.train keys ['log_evry'] ('log_evry': did you mean 'log_every'?); known: [...]``."""
    unknown, known = sorted(unknown), sorted(known)
    hints = [f"{k!r}: did you mean {' or '.join(map(repr, close))}?" for k in unknown
             if (close := closest_keys(k, known))]
    hint = f" ({'; '.join(hints)})" if hints else ""
    return f"unknown {what} keys {unknown}{hint}; known: {known}"


def unknown_value_message(what: str, value: Any, known: Iterable[str]) -> str:
    """``config.data.source.kind='entitygird' (did you mean 'entitygrid'?); known: [...]``."""
    close = closest_keys(str(value), known)
    hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
    return f"{what}={value!r}{hint}; known: {sorted(known)}"


def check_keys(cls: type, d: Mapping[str, Any], what: str | None = None) -> dict[str, Any]:
    """``dict(d)`` after checking that every key names a field of the dataclass ``cls``."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(unknown_keys_message(what or cls.__name__, unknown, known))
    return dict(d)


def check_block(cls: type, d: Mapping[str, Any], what: str) -> dict[str, Any]:
    """:func:`check_keys`, and every field of ``cls`` without a default is present."""
    d = check_keys(cls, d, what)
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in d and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{what} needs the keys {missing}")
    return d


def _scalar_types(hint: Any) -> tuple[type, ...] | None:
    """The scalar types a field annotated ``hint`` accepts (``float`` also takes ``int``), ``None`` for others."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    bases = tuple(typing.get_origin(a) or a for a in args if a is not type(None))
    if not all(isinstance(b, type) and issubclass(b, _SCALARS) for b in bases):
        return None
    return bases + ((int,) if float in bases else ())


def check_fields(obj: Any, what: str, **rules: tuple[Callable[[Any], bool], str]) -> None:
    """Check a dataclass instance: every scalar field has its annotated type (``int | None`` ...), and every field
    named in ``rules`` that is not ``None`` passes ``(predicate, "> 0")``; raises naming ``what.field``."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, allowed = getattr(obj, f.name), _scalar_types(hints[f.name])
        if value is None:
            if allowed is not None and type(None) not in typing.get_args(hints[f.name]):
                raise ValueError(f"{what}.{f.name} is required (got None)")
            continue
        if allowed is not None and (not isinstance(value, allowed) or isinstance(value, bool) != (bool in allowed)):
            hint = getattr(hints[f.name], "__name__", hints[f.name])
            raise ValueError(f"{what}.{f.name}={value!r}: expected {hint}, got {type(value).__name__}")
        if f.name in rules and not rules[f.name][0](value):
            raise ValueError(f"{what}.{f.name}={value!r}: must be {rules[f.name][1]}")


def _placeholder_type(hint: Any) -> type:
    """The type a ``None`` value of a field annotated ``hint`` (e.g. ``int | None``) takes when overridden:
    the scalar itself, or ``ConfigDict`` for a sub-block (a dataclass or mapping given as a dict literal)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = (typing.get_origin(args[0]) or args[0]) if len(args) == 1 else hint
    return base if isinstance(base, type) and issubclass(base, _SCALARS) else ConfigDict


def as_tuples(value: Any, mapping: Callable[[dict], Mapping] = dict) -> Any:
    """Lists as tuples, inside mappings too (rebuilt with ``mapping``, e.g. ``types.MappingProxyType`` for a
    read-only value). ml_collections overrides tuples (``--config.a="(1, 2)"``), not lists."""
    if isinstance(value, (list, tuple)):
        return tuple(as_tuples(v, mapping) for v in value)
    if isinstance(value, Mapping):
        return mapping({k: as_tuples(v, mapping) for k, v in value.items()})
    return value


def with_placeholders(cls: type, d: Mapping[str, Any]) -> dict[str, Any]:
    """``d`` (a block of the dataclass ``cls``) in the form whose every key can be set from the command line: each
    ``None`` value, in sub-blocks too, becomes a typed ``placeholder`` of its field, and lists become tuples."""
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in d.items():
        hint = hints.get(key)
        sub = [a for a in (typing.get_args(hint) or (hint,)) if dataclasses.is_dataclass(a)]
        if value is None and hint is not None:
            value = placeholder(_placeholder_type(hint))
        elif isinstance(value, Mapping) and len(sub) == 1 and isinstance(sub[0], type):
            value = with_placeholders(sub[0], value)
        out[key] = as_tuples(value)
    return out


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()  # type: ignore[operator]  # check_block refused a missing required field


def config_block(cls: type, what: str, **values: Any) -> dict[str, Any]:
    """Every field of the dataclass ``cls`` as a config dict: ``values`` over the field defaults, ``None`` as a
    typed ``placeholder`` so that ``--config.<block>.<key>=...`` works for it too.

    Unknown keys and missing required fields raise, naming the block ``what`` (e.g. ``"config.train"``).
    """
    check_block(cls, values, what)
    block = {f.name: values[f.name] if f.name in values else _default(f) for f in dataclasses.fields(cls)}
    return with_placeholders(cls, block)


def plain(value: Any) -> Any:
    """A ``ConfigDict`` (or a mapping / list holding some) as plain dicts, lists and tuples; other values as is."""
    if isinstance(value, ConfigDict):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
