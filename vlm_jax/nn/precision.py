"""The precision policy: parameter dtype, compute dtype and per-module overrides (DESIGN.md "one precision policy").

A :class:`PrecisionPolicy` is the one place a model's dtypes are chosen. The VLM resolves it per module
(:meth:`PrecisionPolicy.for_module`) into a :class:`Dtypes` pair and hands that to the module it builds;
modules never read dtypes from their own configs. Standalone modules default to :data:`FLOAT32`.

Independent of the policy, the numerically sensitive reductions always run in float32: attention
softmax (:mod:`vlm_jax.nn.attention`), norm statistics (:mod:`vlm_jax.nn.layers`) and the loss
(``vlm_jax.train.loss`` reads float32 logits from the decoder).

Policy dict form (``VLMConfig.precision``)::

    dict(params="float32", compute="bfloat16", overrides={"gswa": "float32", "vision": dict(compute="float32")})

An override is a dtype name (both the parameter and the compute dtype of that module) or a dict with
``params`` and/or ``compute``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import jax.numpy as jnp

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def _check_dtype(name: Any, what: str) -> None:
    if name not in DTYPES:
        raise ValueError(f"{what}={name!r}; known dtypes: {sorted(DTYPES)}")


@dataclasses.dataclass(frozen=True)
class Dtypes:
    """The dtypes of one module: parameters stored in ``params``, activations computed in ``compute``."""

    params: str = "float32"
    compute: str = "float32"

    def __post_init__(self):
        _check_dtype(self.params, "params")
        _check_dtype(self.compute, "compute")

    @property
    def param_dtype(self):
        return DTYPES[self.params]

    @property
    def compute_dtype(self):
        return DTYPES[self.compute]


FLOAT32 = Dtypes()


def _override(value: str | Mapping[str, str], default: Dtypes, name: str) -> Dtypes:
    """One override entry: a dtype name (both dtypes) or a mapping with ``params`` / ``compute``."""
    if isinstance(value, Dtypes):
        return value
    if isinstance(value, str):
        _check_dtype(value, f"precision override {name!r}")
        return Dtypes(value, value)
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"params", "compute"})
        if unknown:
            raise ValueError(f"precision override {name!r} has unknown keys {unknown}; known: ['compute', 'params']")
        return dataclasses.replace(default, **dict(value))
    raise TypeError(f"precision override {name!r} must be a dtype name or a dict, got {value!r}")


@dataclasses.dataclass(frozen=True)
class PrecisionPolicy:
    """Default parameter / compute dtypes and per-module overrides (module docstring).

    Attributes:
      params, compute: dtype names of every module without an override.
      overrides: ``((module name, Dtypes), ...)`` sorted by name (hashable; build it with :meth:`from_dict`).
    """

    params: str = "float32"
    compute: str = "float32"
    overrides: tuple[tuple[str, Dtypes], ...] = ()

    def __post_init__(self):
        default = Dtypes(self.params, self.compute)
        overrides = self.overrides.items() if isinstance(self.overrides, Mapping) else self.overrides
        resolved = tuple(sorted((str(name), _override(value, default, name)) for name, value in overrides))
        object.__setattr__(self, "overrides", resolved)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> PrecisionPolicy:
        """Build from ``dict(params=..., compute=..., overrides={...})``; unknown keys raise."""
        d = dict(d or {})
        unknown = sorted(set(d) - {"params", "compute", "overrides"})
        if unknown:
            raise ValueError(f"unknown precision keys {unknown}; known: ['compute', 'overrides', 'params']")
        return cls(**d)

    def for_module(self, name: str) -> Dtypes:
        """The dtypes of the module called ``name`` (its override, else the defaults)."""
        return dict(self.overrides).get(name, Dtypes(self.params, self.compute))

    def check_modules(self, names: Iterable[str]) -> None:
        """Refuse overrides that name no module of the model (``names``): they would be silently ignored."""
        names = sorted(names)
        stray = sorted(set(dict(self.overrides)) - set(names))
        if stray:
            raise ValueError(f"precision overrides {stray} name no module of this model; its modules: {names}")


def refuse_dtype_keys(d: Mapping[str, Any], owner: str) -> None:
    """Configs of modules carry no dtypes: a ``dtype`` / ``param_dtype`` key is a mistake with a known fix."""
    found = sorted({"dtype", "param_dtype"} & set(d))
    if found:
        raise ValueError(f"{owner} has no {found}: dtypes come from the precision policy (VLMConfig.precision, "
                         "e.g. dict(params='float32', compute='bfloat16')) or the module's dtypes= argument")
