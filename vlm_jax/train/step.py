"""The train state and the one jitted train step (functional NNX: merge inside, return new state).

The state holds the whole parameter tree (the same layout in every recipe stage); inside the step it is
split by the stage's trainable filter: only the trainable part is differentiated and has optimizer state,
the frozen part rides along. Gradient accumulation splits the batch into ``accum`` micro-batches scanned
inside the step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from vlm_jax.train.loss import next_token_loss


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainState:
    """``step`` int32 scalar; ``params`` the whole NNX parameter state; ``opt_state`` over the stage's
    trainable part of it (:class:`vlm_jax.train.stage_state.StageState`)."""

    step: jax.Array
    params: nnx.State
    opt_state: Any


def make_train_step(graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, is_trainable: Any, *,
                    z_loss: float = 0.0, accum: int = 1, seed: int = 0) -> Callable:
    """``step(state, batch) -> (state, metrics)``; :meth:`StageState.jit_step` jits it with explicit shardings.

    ``is_trainable``: the stage's ``nnx`` filter (:func:`vlm_jax.train.recipe.trainable_filter`).

    The model runs in train mode with a key folded from ``seed`` and the step (and micro-batch) number, so a
    resumed run draws the same noise.
    """

    def summed_loss(trainable, frozen, batch, rng):
        model = nnx.merge(graphdef, trainable, frozen)
        logits = model(batch, train=True, rng=rng)
        loss, aux = next_token_loss(logits, batch["tokens"], batch["loss_mask"] & batch["valid"], z_loss)
        n = jnp.maximum(aux["tokens"], 1.0)
        return loss * n, aux

    grad_fn = jax.value_and_grad(summed_loss, has_aux=True)

    def step(state: TrainState, batch: Mapping[str, jax.Array]):
        key = jax.random.fold_in(jax.random.key(seed), state.step)
        trainable, frozen = nnx.split_state(state.params, is_trainable, ...)
        if accum == 1:
            (total, aux), grads = grad_fn(trainable, frozen, batch, key)
        else:
            micro = jax.tree.map(lambda x: x.reshape(accum, x.shape[0] // accum, *x.shape[1:]), dict(batch))
            micro = (micro, jnp.arange(accum))

            def body(carry, inputs):
                mb, i = inputs
                (t, a), g = grad_fn(trainable, frozen, mb, jax.random.fold_in(key, i))
                acc_t, acc_a, acc_g = carry
                return (acc_t + t, jax.tree.map(jnp.add, acc_a, a), jax.tree.map(jnp.add, acc_g, g)), None

            zeros = (jnp.zeros(()), {k: jnp.zeros(()) for k in ("ce", "z", "tokens", "correct")},
                     jax.tree.map(jnp.zeros_like, trainable))
            (total, aux, grads), _ = jax.lax.scan(body, zeros, micro)
            aux = dict(aux, ce=aux["ce"] / accum, z=aux["z"] / accum)
        n = jnp.maximum(aux["tokens"], 1.0)
        grads = jax.tree.map(lambda g: g / n, grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, trainable)
        trainable = optax.apply_updates(trainable, updates)
        metrics = {"loss": total / n, "ce": aux["ce"], "tokens": aux["tokens"],
                   "accuracy": aux["correct"] / n, "grad_norm": optax.global_norm(grads),
                   "param_norm": optax.global_norm(trainable)}
        return TrainState(state.step + 1, nnx.merge_state(trainable, frozen), opt_state), metrics

    return step
