"""The one engine that applies a :class:`~vlm_jax.interop.key_mapping.KeyMapping` in either direction.

* :func:`load_mapped` (import): HF safetensors → our parameters, streaming one HF tensor at a time
  (per layer for scanned parameters, stacked only for the one parameter being filled). Each tensor's
  shape is checked against the one the rule expects before it is read, so a wrong checkpoint fails
  naming the tensor. Then every tensor of the checkpoint must have been read (or be declared
  ``ignored`` / an equal ``tied`` copy).
* :func:`plan_export` (export): our parameters → :class:`~vlm_jax.interop.safetensors_writer.PlannedTensor` s,
  each with its HF key, shape and a callback that fetches only that tensor (one layer of a scanned
  parameter) from the devices. Every parameter must be written by a rule.

Paths are NNX paths joined with ``/`` (``llm/layers/layers/attn/q_kernel``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx

from vlm_jax.interop.checkpoint_io import TensorSource, assign
from vlm_jax.interop.errors import CheckpointError, NotExportable
from vlm_jax.interop.key_mapping import KeyMapping, Rule
from vlm_jax.interop.safetensors_writer import PlannedTensor
from vlm_jax.interop.transforms import layer_slice, stack_layers


def parameters(module: nnx.Module) -> dict[str, nnx.Variable]:
    """``{path: variable}`` of every :class:`nnx.Param` of ``module`` (concrete or abstract)."""
    return {"/".join(map(str, path)): var for path, var in nnx.iter_graph(module) if isinstance(var, nnx.Param)}


def applicable_rules(mapping: KeyMapping, params: dict[str, nnx.Variable]) -> list[Rule]:
    """The rules whose parameters the module has (all of them, or none: a partial match is a table bug)."""
    out = []
    for r in mapping.rules:
        present = [p in params for p in r.ours]
        if all(present):
            out.append(r)
        elif any(present):
            raise ValueError(f"rule for {r.hf!r}: the module has only some of {list(r.ours)}")
    return out


def _layer_shapes(rule: Rule, values: Sequence) -> tuple[list[int | None], list[tuple[int, ...]]]:
    """The layer indices of ``rule`` (``[None]`` when not scanned) and the per-layer shapes of its parameters."""
    shapes = [tuple(v.shape) for v in values]
    if not rule.stacked:
        return [None], shapes
    counts = {s[0] if s else None for s in shapes}
    if len(counts) != 1 or None in counts:
        raise ValueError(f"rule for {rule.hf!r}: parameters {list(rule.ours)} are not stacked alike: {shapes}")
    return list(range(counts.pop())), [s[1:] for s in shapes]


def hf_shape(rule: Rule, our_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    """The HF tensor shape ``rule`` writes for parameters (of one layer) of ``our_shapes``."""
    specs = [jax.ShapeDtypeStruct(s, np.float32) for s in our_shapes]
    return tuple(jax.eval_shape(rule.transform.to_hf, *specs).shape)


def load_mapped(module: nnx.Module, source: TensorSource, mapping: KeyMapping) -> None:
    """Fill ``module``'s parameters (possibly abstract, from ``nnx.eval_shape``) from ``source`` by ``mapping``.

    Raises :class:`CheckpointError` naming the tensor for a missing, mis-shaped or unexpected tensor, or
    for a ``tied`` copy that differs. Parameters no applicable rule names are left as they are (callers
    check completeness with :func:`vlm_jax.interop.checkpoint_io.check_all_set` where it is required).
    """
    params = parameters(module)
    for r in applicable_rules(mapping, params):
        targets = [params[p] for p in r.ours]
        layers, shapes = _layer_shapes(r, [t.get_value() for t in targets])
        expected = hf_shape(r, shapes)
        per_layer: list[list[np.ndarray]] = [[] for _ in targets]
        for i in layers:
            key = r.hf_key(i)
            if source.shape(key) != expected:
                raise CheckpointError(f"{key}: checkpoint shape {source.shape(key)} != expected {expected}")
            for values, part in zip(per_layer, r.transform.to_ours(source.get(key)), strict=True):
                values.append(part)
        for var, path, values in zip(targets, r.ours, per_layer, strict=True):
            assign(var, stack_layers(values) if r.stacked else values[0], f"{r.hf} -> {path}")
    for copy, original in mapping.tied:
        if copy in source and not source.was_read(copy):
            if not np.array_equal(source.get(copy), source.get(original)):
                raise CheckpointError(f"the model ties {copy} to {original}, but the checkpoint's tensors differ")
    source.check_all_used(ignore=mapping.is_ignored)


def plan_export(module: nnx.Module, mapping: KeyMapping) -> list[PlannedTensor]:
    """The HF tensors of ``module`` by ``mapping``: keys, shapes and per-tensor fetch callbacks.

    Raises :class:`NotExportable` naming the parameters no rule writes.
    """
    params = parameters(module)
    rules = applicable_rules(mapping, params)
    left = sorted(set(params) - {p for r in rules for p in r.ours})
    if left:
        raise NotExportable(f"parameters without an HF tensor: {left[:5]}")
    planned = []
    for r in rules:
        values = [params[p].get_value() for p in r.ours]
        layers, shapes = _layer_shapes(r, values)
        shape = hf_shape(r, shapes)
        for i in layers:
            def fetch(r=r, values=values, i=i):
                parts = [v if i is None else layer_slice(v, i) for v in values]
                return r.transform.to_hf(*(np.asarray(jax.device_get(p), np.float32) for p in parts))

            planned.append(PlannedTensor(r.hf_key(i), shape, fetch))
    return planned
