"""Basic NNX layers whose parameters carry logical axis names (see ``vlm_jax.sharding``).

Kernels are stored ``[in, out]`` (Hugging Face ``nn.Linear`` stores ``[out, in]``; the importers
transpose). Parameters live in ``param_dtype`` (float32 master weights); computation runs in
``dtype`` (e.g. bfloat16), with norms computed in float32.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

Axes = Sequence[str | None]

default_kernel_init = nnx.initializers.lecun_normal()


class Dense(nnx.Module):
    """``y = x @ W + b`` over the last axis. ``W: [in, out]``, ``b: [out]``."""

    def __init__(self, in_features: int, out_features: int, *, axes: Axes, use_bias: bool = True,
                 dtype=jnp.float32, param_dtype=jnp.float32,
                 kernel_init: Callable = default_kernel_init, bias_init: Callable = nnx.initializers.zeros,
                 rngs: nnx.Rngs):
        self.kernel = nnx.Param(kernel_init(rngs.params(), (in_features, out_features), param_dtype),
                                out_sharding=tuple(axes))
        self.bias = (nnx.Param(bias_init(rngs.params(), (out_features,), param_dtype), out_sharding=(axes[-1],))
                     if use_bias else None)
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jnp.dot(x.astype(self.dtype), self.kernel[...].astype(self.dtype))
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


class Embed(nnx.Module):
    """Token embedding table ``[vocab, dim]``; :meth:`attend` gives tied output logits."""

    def __init__(self, num_embeddings: int, features: int, *, axes: Axes = ("vocab", "embed"),
                 dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        init = nnx.initializers.normal(stddev=1.0)
        self.embedding = nnx.Param(init(rngs.params(), (num_embeddings, features), param_dtype),
                                   out_sharding=tuple(axes))
        self.dtype = dtype

    def __call__(self, ids: jax.Array) -> jax.Array:
        return jnp.take(self.embedding[...], ids, axis=0).astype(self.dtype)

    def attend(self, x: jax.Array) -> jax.Array:
        return jnp.dot(x.astype(self.dtype), self.embedding[...].astype(self.dtype).T)


class LayerNorm(nnx.Module):
    """LayerNorm over the last axis, computed in float32. ``scale, bias: [D]``."""

    def __init__(self, features: int, *, eps: float = 1e-5, use_bias: bool = True, axis_name: str = "norm",
                 dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs | None = None):
        self.scale = nnx.Param(jnp.ones((features,), param_dtype), out_sharding=(axis_name,))
        self.bias = nnx.Param(jnp.zeros((features,), param_dtype), out_sharding=(axis_name,)) if use_bias else None
        self.eps = eps
        self.dtype = dtype

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

    def __init__(self, features: int, *, eps: float = 1e-6, axis_name: str = "norm",
                 dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs | None = None):
        self.scale = nnx.Param(jnp.ones((features,), param_dtype), out_sharding=(axis_name,))
        self.eps = eps
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.square(x32).mean(-1, keepdims=True) + self.eps)
        return (y * self.scale[...].astype(jnp.float32)).astype(self.dtype)


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
