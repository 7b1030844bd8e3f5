"""Layers with stacked parameters (leading ``layers`` axis) run by ``jax.lax.scan``.

Scanning keeps compile time flat in depth; ``remat`` chooses what the backward pass recomputes.
:meth:`LayerStack.scan` can run a sub-range of layers, which is how a ViT returns the hidden
state of layer ``-2`` and how adapters are inserted between layers (HiRes-LLaVA's SliceRestore).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

REMAT_POLICIES: dict[str, Any] = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


class LayerStack(nnx.Module):
    """``num_layers`` copies of ``make_layer(rngs)`` with parameters stacked on axis 0."""

    def __init__(self, make_layer: Callable[[nnx.Rngs], nnx.Module], num_layers: int, *,
                 remat: str = "none", rngs: nnx.Rngs):
        if remat not in REMAT_POLICIES:
            raise ValueError(f"unknown remat policy {remat!r}; known: {sorted(REMAT_POLICIES)}")

        @nnx.split_rngs(splits=num_layers)
        @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
        def create(r: nnx.Rngs):
            return make_layer(r)

        self.layers = create(rngs)
        self.num_layers = num_layers
        self.remat = remat

    def scan(self, fn: Callable[[nnx.Module, Any, Any], tuple[Any, Any]], carry: Any, xs: Any = None, *,
             start: int = 0, stop: int | None = None) -> tuple[Any, Any]:
        """``lax.scan`` of ``fn(layer, carry, x_i) -> (carry, y_i)`` over layers ``[start, stop)``.

        ``xs`` (e.g. a stacked KV cache) must have a leading axis of length ``stop - start``.
        """
        stop = self.num_layers if stop is None else stop
        if not 0 <= start <= stop <= self.num_layers:
            raise ValueError(f"layer range [{start}, {stop}) outside [0, {self.num_layers}]")
        if start == stop:
            return carry, None
        graphdef, state = nnx.split(self.layers)
        state = jax.tree.map(lambda a: a[start:stop], state)

        def body(c, inputs):
            layer_state, x = inputs
            return fn(nnx.merge(graphdef, layer_state), c, x)

        policy = REMAT_POLICIES[self.remat]
        if self.remat != "none":
            body = jax.checkpoint(body, policy=policy, prevent_cse=False)
        return jax.lax.scan(body, carry, (state, xs))
