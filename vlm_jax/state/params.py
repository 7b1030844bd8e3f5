"""Parameters of a model config on a mesh: abstract (shapes, dtypes, shardings; nothing allocated) or
initialised directly sharded.

Every parameter's sharding comes from its logical axis names through the one rules table
(:func:`vlm_jax.sharding.state_shardings`). The model is built with ``mesh`` as the ambient abstract mesh so
that ``attention_impl="auto"`` resolves for the mesh's platform (splash on a TPU topology compiled from a CPU
host, :mod:`vlm_jax.aot`); the graphdef therefore belongs to the mesh.
"""

from __future__ import annotations

import jax
from flax import nnx
from jax.sharding import Mesh

from vlm_jax import sharding
from vlm_jax.model import VLM, VLMConfig


def _is_variable(x) -> bool:
    return isinstance(x, nnx.Variable)


def abstract_params(model_cfg: VLMConfig, mesh: Mesh) -> tuple[nnx.GraphDef, nnx.State]:
    """``(graphdef, params)`` of ``VLM(model_cfg)``: ``params`` holds ``jax.ShapeDtypeStruct`` values that
    carry their ``NamedSharding`` on ``mesh``; ``nnx.merge(graphdef, concrete_params)`` is the model."""

    def build():
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            return VLM(model_cfg, rngs=nnx.Rngs(0))

    graphdef, state = nnx.split(nnx.eval_shape(build))
    shardings = sharding.state_shardings(state, mesh)
    params = jax.tree.map(lambda v, s: v.replace(jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s)),
                          state, shardings, is_leaf=_is_variable)
    return graphdef, params


def shardings_of(tree):
    """The ``sharding`` of every leaf (abstract or concrete arrays), same tree structure."""
    return jax.tree.map(lambda x: x.sharding, tree)


def init_params(model_cfg: VLMConfig, mesh: Mesh, seed: int) -> nnx.State:
    """Freshly initialised parameters (``nnx.Rngs(seed)``), created directly with the shardings of
    :func:`abstract_params`, so that no device ever holds the whole model."""
    _, params, _ = sharding.init_sharded(lambda: VLM(model_cfg, rngs=nnx.Rngs(seed)), mesh)
    return params
