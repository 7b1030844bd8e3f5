"""Matmul FLOPs of a traced program, counting every iteration of a scan (XLA's cost analysis counts the body
of a loop once, so a scanned layer stack looks like one layer there).

``dot_general`` costs ``2 · |output| · |contracted dims|`` FLOPs. Scan bodies count ``length`` times (or once,
to reproduce XLA's way of counting); ``cond`` counts its most expensive branch; a ``shard_map`` body (local
shapes) counts once per device of its manual axes; custom kernels (``pallas_call``: splash attention on TPU)
count nothing, as in XLA's analysis. Everything else is looked into through its sub-programs (``jit``,
``remat``, custom derivatives).
"""

from __future__ import annotations

import math

from jax.extend import core as jex_core

OPAQUE = frozenset({"pallas_call"})


def _programs(value) -> list:
    """The jaxprs held by one equation parameter (a jaxpr, a closed jaxpr, or a tuple of them)."""
    items = value if isinstance(value, (tuple, list)) else [value]
    found = []
    for item in items:
        if isinstance(item, jex_core.ClosedJaxpr):
            found.append(item.jaxpr)
        elif isinstance(item, jex_core.Jaxpr):
            found.append(item)
    return found


def _manual_devices(params) -> int:
    mesh, axes = params.get("mesh"), params.get("newly_manual_axes") or params.get("manual_axes") or ()
    return math.prod(mesh.shape[a] for a in axes) if mesh is not None else 1


def matmul_flops(jaxpr, *, scans_once: bool = False) -> float:
    """Total ``dot_general`` FLOPs of ``jaxpr`` (a ``Jaxpr`` or ``ClosedJaxpr``), see the module docstring."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[i] for i in contract)
        elif name in OPAQUE:
            continue
        elif name == "cond":
            total += max(matmul_flops(b, scans_once=scans_once) for b in eqn.params["branches"])
        else:
            times = {"scan": 1 if scans_once else eqn.params.get("length", 1),
                     "shard_map": _manual_devices(eqn.params)}.get(name, 1)
            total += times * sum(matmul_flops(p, scans_once=scans_once)
                                 for value in eqn.params.values() for p in _programs(value))
    return total
