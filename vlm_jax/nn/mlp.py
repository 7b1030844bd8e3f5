"""The two-layer MLP of transformer blocks and small heads: ``fc2(act(fc1(x)))``."""

from __future__ import annotations

from collections.abc import Callable

import jax
from flax import nnx

from vlm_jax.nn.axis_names import AxisNames
from vlm_jax.nn.einsum import DEFAULT_KERNEL_INIT, Dense
from vlm_jax.nn.layers import activation
from vlm_jax.nn.precision import FLOAT32, Dtypes


class MLP(nnx.Module):
    """``[.., D] → [.., hidden] → [.., out]`` (``out`` default ``D``): ``fc1`` with ``act``, then ``fc2``.

    Kernels ``fc1 [D, hidden]`` (axes ``embed, mlp``) and ``fc2 [hidden, out]`` (``mlp, embed``), both with
    biases; ``out_kernel_init`` initialises ``fc2`` (zeros: a head that starts at a constant).
    """

    def __init__(self, dim: int, hidden: int, *, act: str, axes: AxisNames, out_dim: int | None = None,
                 out_kernel_init: Callable = DEFAULT_KERNEL_INIT, dtypes: Dtypes = FLOAT32, rngs: nnx.Rngs):
        self.fc1 = Dense(dim, hidden, axes=(axes.embed, axes.mlp), dtypes=dtypes, rngs=rngs)
        self.fc2 = Dense(hidden, out_dim or dim, axes=(axes.mlp, axes.embed), kernel_init=out_kernel_init,
                         dtypes=dtypes, rngs=rngs)
        self.act = activation(act)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(self.act(self.fc1(x)))
