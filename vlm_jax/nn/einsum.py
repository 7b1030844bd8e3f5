"""The one projection primitive: ``y = einsum(equation, x, kernel) + bias`` with logical axis names.

Modelled on the flax gemma example's ``Einsum``: the equation names the kernel's axes, e.g.
``"btd,dhk->bthk"`` (split heads), ``"bthk,hkd->btd"`` (merge heads) or ``"...i,io->...o"``
(:class:`Dense`). From it follow

* the contracted kernel axes (those of ``x`` not in the output; they must come first in the kernel)
  and the output axes (the rest);
* the bias: one value per output axis of the kernel, which must be the trailing axes of the output;
* the initialisation: ``kernel_init`` sees the kernel as a ``[fan_in, fan_out]`` matrix, so any
  2-D initialiser (``lecun_normal``, ``variance_scaling``, zeros) gets the right fans whatever the rank.

Parameters live in ``dtypes.param_dtype``; inputs and parameters are cast to ``dtypes.compute_dtype``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from vlm_jax.nn.precision import FLOAT32, Dtypes

Axes = Sequence[str | None]
DEFAULT_KERNEL_INIT = nnx.initializers.lecun_normal()


def kernel_roles(equation: str, kernel_rank: int) -> tuple[int, int]:
    """``(contracted, out)`` kernel axis counts of ``equation`` (validated: contracted axes first, output axes
    trailing in the result)."""
    inputs, _, out = equation.replace(" ", "").partition("->")
    x_spec, _, k_spec = inputs.partition(",")
    if not out or not k_spec or len(k_spec) != kernel_rank or "." in k_spec:
        raise ValueError(f"einsum {equation!r} needs the form 'x,kernel->out' with a {kernel_rank}-letter kernel")
    contracted = [c in x_spec and c not in out for c in k_spec]
    n_in = sum(contracted)
    if contracted != [True] * n_in + [False] * (kernel_rank - n_in):
        raise ValueError(f"einsum {equation!r}: the kernel's contracted axes must come first")
    if not out.endswith(k_spec[n_in:]):
        raise ValueError(f"einsum {equation!r}: the kernel's output axes must be the trailing output axes")
    return n_in, kernel_rank - n_in


def einsum_params(equation: str, shape: Sequence[int], *, axes: Axes, use_bias: bool, kernel_init: Callable,
                  bias_init: Callable, param_dtype, rngs: nnx.Rngs) -> tuple[nnx.Param, nnx.Param | None]:
    """``kernel [shape]`` and ``bias [shape[n_in:]]`` (or None) of a projection, with logical ``axes``."""
    shape, axes = tuple(shape), tuple(axes)
    if len(axes) != len(shape):
        raise ValueError(f"kernel shape {shape} and axes {axes} differ in rank")
    n_in, _ = kernel_roles(equation, len(shape))
    matrix = (math.prod(shape[:n_in]), math.prod(shape[n_in:]))
    kernel = nnx.Param(kernel_init(rngs.params(), matrix, param_dtype).reshape(shape), out_sharding=axes)
    bias = nnx.Param(bias_init(rngs.params(), shape[n_in:], param_dtype), out_sharding=axes[n_in:]) if use_bias \
        else None
    return kernel, bias


def project(equation: str, x: jax.Array, kernel: jax.Array, bias: jax.Array | None, dtype) -> jax.Array:
    """``einsum(equation, x, kernel) + bias``, computed in ``dtype``."""
    y = jnp.einsum(equation, x.astype(dtype), kernel.astype(dtype))
    return y if bias is None else y + bias.astype(dtype)


class Einsum(nnx.Module):
    """A linear projection ``einsum(equation, x, kernel) (+ bias)`` (module docstring)."""

    def __init__(self, equation: str, shape: Sequence[int], *, axes: Axes, use_bias: bool = True,
                 kernel_init: Callable = DEFAULT_KERNEL_INIT, bias_init: Callable = nnx.initializers.zeros,
                 dtypes: Dtypes = FLOAT32, rngs: nnx.Rngs):
        self.kernel, self.bias = einsum_params(equation, shape, axes=axes, use_bias=use_bias, kernel_init=kernel_init,
                                               bias_init=bias_init, param_dtype=dtypes.param_dtype, rngs=rngs)
        self.equation = equation
        self.dtype = dtypes.compute_dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        return project(self.equation, x, self.kernel[...], None if self.bias is None else self.bias[...], self.dtype)


class Dense(Einsum):
    """``y = x @ W + b`` over the last axis: ``W: [in, out]``, ``b: [out]`` (Hugging Face ``nn.Linear`` stores
    ``[out, in]``; the importers transpose)."""

    def __init__(self, in_features: int, out_features: int, *, axes: Axes, use_bias: bool = True,
                 kernel_init: Callable = DEFAULT_KERNEL_INIT, bias_init: Callable = nnx.initializers.zeros,
                 dtypes: Dtypes = FLOAT32, rngs: nnx.Rngs):
        super().__init__("...i,io->...o", (in_features, out_features), axes=axes, use_bias=use_bias,
                         kernel_init=kernel_init, bias_init=bias_init, dtypes=dtypes, rngs=rngs)
