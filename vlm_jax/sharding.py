"""Mesh construction, the one logical-axis rules table, and the activation-constraint helper.

Every parameter in vlm_jax carries logical axis names (``nnx.Param(..., out_sharding=("embed", "mlp"))``)
and every large activation is constrained through :func:`constrain`. :data:`LOGICAL_AXIS_RULES` is
the single place that maps those names to the physical mesh axes ``data``, ``fsdp``, ``tensor``
(and ``sequence``, reserved). The vision tower has its own names (``vit_*``) so that it can be
sharded differently from the LLM (it is small and wide-batched: data/fsdp only by default).

A dimension that is not divisible by the mesh axes its rule names is left replicated rather than
failing: tiny test models (hidden 32, vocab 128) must run on any mesh. :func:`replicated_fraction`
reports how many parameter bytes end up replicated and :func:`check_sharded` can turn that into a
start-up error, as MaxText's ``assert_params_sufficiently_sharded`` does.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor", "sequence")

# logical name -> mesh axes (tried together; dropped when the dimension is not divisible).
LOGICAL_AXIS_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # activations
    ("act_batch", ("data", "fsdp")),
    ("act_len", ("sequence",)),
    ("act_embed", ()),
    ("act_heads", ("tensor",)),
    ("act_kv_heads", ("tensor",)),
    ("act_mlp", ("tensor",)),
    ("act_vocab", ("tensor",)),
    ("act_tiles", ()),
    # LLM parameters
    ("vocab", ("tensor",)),
    ("embed", ("fsdp",)),
    ("mlp", ("tensor",)),
    ("heads", ("tensor",)),
    ("kv_heads", ("tensor",)),
    ("head_dim", ()),
    ("norm", ()),
    ("layers", ()),
    # vision tower parameters
    ("vit_embed", ("fsdp",)),
    ("vit_mlp", ("tensor",)),
    ("vit_heads", ("tensor",)),
    ("vit_head_dim", ()),
    ("vit_patch", ()),
    ("vit_pos", ()),
    # adapters / projectors / high-res modules
    ("adapter_embed", ("fsdp",)),
    ("adapter_mlp", ("tensor",)),
    ("queries", ()),
)

_RULES = dict(LOGICAL_AXIS_RULES)


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, sequence: int = 1,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh with named axes ``(data, fsdp, tensor, sequence)`` and ``AxisType.Auto`` axes.

    At most one size may be -1; it takes all remaining devices. Auto axes let GSPMD propagate
    shardings from the constraints (JAX >= 0.10 defaults to Explicit axes, which this library
    does not use).
    """
    devices = list(jax.devices() if devices is None else devices)
    sizes = [data, fsdp, tensor, sequence]
    if sum(s == -1 for s in sizes) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {dict(zip(MESH_AXES, sizes))}")
    known = math.prod(s for s in sizes if s != -1)
    if any(s == 0 or s < -1 for s in sizes):
        raise ValueError(f"mesh sizes must be positive or -1, got {dict(zip(MESH_AXES, sizes))}")
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"{len(devices)} devices do not divide by the fixed mesh axes ({known})")
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices):
        raise ValueError(
            f"mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, have {len(devices)}")
    grid = np.asarray(devices, dtype=object).reshape(sizes)
    return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def mesh_from_config(cfg, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Mesh from a config block with ``data``, ``fsdp``, ``tensor`` (and optional ``sequence``)."""
    return make_mesh(cfg.data, cfg.fsdp, cfg.tensor, cfg.get("sequence", 1), devices=devices)


def logical_to_spec(names: Sequence[str | None] | None, shape: Sequence[int] | None = None,
                    mesh: Mesh | None = None) -> P:
    """Map logical axis names to a ``PartitionSpec`` through :data:`LOGICAL_AXIS_RULES`.

    With ``shape`` and ``mesh`` given, mesh axes that do not divide a dimension (or are already
    used by an earlier dimension) are dropped for that dimension, so the result is always valid.
    Unknown names raise: a typo in a module must not silently replicate a parameter.
    """
    if names is None:
        return P()
    used: set[str] = set()
    out = []
    for i, name in enumerate(names):
        if name is None:
            out.append(None)
            continue
        if name not in _RULES:
            raise KeyError(f"logical axis {name!r} has no rule in vlm_jax.sharding.LOGICAL_AXIS_RULES")
        axes = []
        size = None if shape is None else shape[i]
        for ax in _RULES[name]:
            if ax in used:
                continue
            n = 1 if mesh is None else mesh.shape[ax]
            if mesh is not None and n == 1:
                continue
            if size is not None and mesh is not None:
                if size % (n * math.prod(mesh.shape[a] for a in axes)):
                    continue
            axes.append(ax)
        used.update(axes)
        out.append(None if not axes else axes[0] if len(axes) == 1 else tuple(axes))
    return P(*out)


def _current_mesh() -> Mesh | None:
    mesh = jax.sharding.get_abstract_mesh()
    return None if mesh is None or mesh.empty else mesh


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """``with_sharding_constraint`` by logical names; a no-op outside a mesh context."""
    mesh = _current_mesh()
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, logical_to_spec(names, x.shape, mesh))


def state_shardings(state, mesh: Mesh):
    """``NamedSharding`` for every leaf of an NNX state from its ``out_sharding`` metadata."""

    def one(var):
        names = var.get_metadata().get("out_sharding") if isinstance(var, nnx.Variable) else None
        shape = var.get_value().shape if isinstance(var, nnx.Variable) else var.shape
        return NamedSharding(mesh, logical_to_spec(names, shape, mesh) if names else P())

    return jax.tree.map(one, state, is_leaf=lambda v: isinstance(v, nnx.Variable))


def replicated_fraction(state, shardings) -> float:
    """Fraction of parameter bytes that are fully replicated under ``shardings``."""
    total = replicated = 0
    for leaf, sh in zip(jax.tree.leaves(state), jax.tree.leaves(shardings)):
        nbytes = math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize
        total += nbytes
        if all(s is None for s in sh.spec) and math.prod(leaf.shape) > 1:
            replicated += nbytes
    return replicated / max(total, 1)


def check_sharded(state, shardings, mesh: Mesh, max_replicated: float | None = None) -> float:
    """Log the replicated fraction of parameter bytes; raise if above ``max_replicated``."""
    frac = replicated_fraction(state, shardings)
    logging.info("parameters: %.1f%% of bytes replicated on mesh %s", 100 * frac, dict(mesh.shape))
    if max_replicated is not None and mesh.size > 1 and frac > max_replicated:
        raise ValueError(
            f"{100 * frac:.1f}% of parameter bytes are replicated on mesh {dict(mesh.shape)} "
            f"(allowed {100 * max_replicated:.1f}%): check the logical axis names and mesh sizes")
    return frac


@contextlib.contextmanager
def use_mesh(mesh: Mesh):
    """Make ``mesh`` the ambient mesh so :func:`constrain` takes effect."""
    with jax.set_mesh(mesh):
        yield mesh


def init_sharded(make: Callable[[], nnx.Module], mesh: Mesh):
    """Create a module's parameters directly sharded: shapes from ``nnx.eval_shape``, values from
    ``jax.jit(out_shardings=...)``, so no device ever holds the whole model.

    Returns ``(graphdef, state, shardings)``.
    """
    graphdef, abstract = nnx.split(nnx.eval_shape(make))
    shardings = state_shardings(abstract, mesh)
    state = jax.jit(lambda: nnx.split(make())[1], out_shardings=shardings)()
    return graphdef, state, shardings
