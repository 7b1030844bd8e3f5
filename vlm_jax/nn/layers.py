"""Basic NNX layers whose parameters carry logical axis names (see ``vlm_jax.sharding``): the token
embedding, LayerNorm / RMSNorm (statistics always in float32) and the activation table.

Parameters live in ``dtypes.param_dtype``; outputs are in ``dtypes.compute_dtype`` (``vlm_jax.nn.precision``).
The projection primitive is :mod:`vlm_jax.nn.einsum`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from vlm_jax.nn.precision import FLOAT32, Dtypes

Axes = Sequence[str | None]


class Embed(nnx.Module):
    """Token embedding table ``[vocab, dim]``; :meth:`attend` gives tied output logits."""

    def __init__(self, num_embeddings: int, features: int, *, axes: Axes = ("vocab", "embed"),
                 dtypes: Dtypes = FLOAT32, rngs: nnx.Rngs):
        init = nnx.initializers.normal(stddev=1.0)
        self.embedding = nnx.Param(init(rngs.params(), (num_embeddings, features), dtypes.param_dtype),
                                   out_sharding=tuple(axes))
        self.dtype = dtypes.compute_dtype

    def __call__(self, ids: jax.Array) -> jax.Array:
        return jnp.take(self.embedding[...], ids, axis=0).astype(self.dtype)

    def attend(self, x: jax.Array) -> jax.Array:
        return jnp.dot(x.astype(self.dtype), self.embedding[...].astype(self.dtype).T)


class LayerNorm(nnx.Module):
    """LayerNorm over the last axis, computed in float32. ``scale, bias: [D]``."""

    def __init__(self, features: int, *, eps: float = 1e-5, use_bias: bool = True, axis_name: str = "norm",
                 dtypes: Dtypes = FLOAT32):
        pdt = dtypes.param_dtype
        self.scale = nnx.Param(jnp.ones((features,), pdt), out_sharding=(axis_name,))
        self.bias = nnx.Param(jnp.zeros((features,), pdt), out_sharding=(axis_name,)) if use_bias else None
        self.eps = eps
        self.dtype = dtypes.compute_dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        mean = x32.mean(-1, keepdims=True)
        var = jnp.square(x32 - mean).mean(-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps) * self.scale[...].astype(jnp.float32)
        if self.bias is not None:
            y = y + self.bias[...].astype(jnp.float32)
        return y.astype(self.dtype)


class RMSNorm(nnx.Module):
    """RMSNorm (Llama): ``x / rms(x) * scale``, computed in float32. ``scale: [D]``."""

    def __init__(self, features: int, *, eps: float = 1e-6, axis_name: str = "norm", dtypes: Dtypes = FLOAT32):
        self.scale = nnx.Param(jnp.ones((features,), dtypes.param_dtype), out_sharding=(axis_name,))
        self.eps = eps
        self.dtype = dtypes.compute_dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.square(x32).mean(-1, keepdims=True) + self.eps)
        return (y * self.scale[...].astype(jnp.float32)).astype(self.dtype)


NORMS: dict[str, type[LayerNorm] | type[RMSNorm]] = {"layer": LayerNorm, "rms": RMSNorm}


def make_norm(kind: str, features: int, *, eps: float, dtypes: Dtypes = FLOAT32) -> LayerNorm | RMSNorm:
    """A norm of ``kind`` (``NORMS``) over ``[.., features]``; unknown kinds fail with the known ones."""
    if kind not in NORMS:
        raise ValueError(f"unknown norm {kind!r}; known: {sorted(NORMS)}")
    return NORMS[kind](features, eps=eps, dtypes=dtypes)


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "silu": jax.nn.silu,
    "relu": jax.nn.relu,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """Activation by name; unknown names fail with the list of known ones."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(ACTIVATIONS)}") from None
