"""Optax optimizer of one recipe stage: AdamW with warm-up + cosine decay, per-group learning rates,
global-norm clipping; weight decay only on matrices (kernels, embeddings)."""

from __future__ import annotations

import jax
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from vlm_jax.train.recipe import Stage, lr_labels


def schedule(peak: float, steps: int, warmup: float, final_fraction: float = 0.0) -> optax.Schedule:
    """Linear warm-up over ``warmup·steps`` steps (fraction) then cosine decay to ``final_fraction·peak``."""
    warm = max(int(round(warmup * steps)), 0)
    if warm >= steps:
        raise ValueError(f"warm-up ({warm} steps) must be shorter than the stage ({steps} steps)")
    return optax.warmup_cosine_decay_schedule(0.0 if warm else peak, peak, warm, steps,
                                              end_value=final_fraction * peak)


def make_optimizer(stage: Stage, trainable: nnx.State, *, b1: float = 0.9, b2: float = 0.999,
                   eps: float = 1e-8, weight_decay: float = 0.0, grad_clip: float | None = 1.0,
                   final_fraction: float = 0.0) -> optax.GradientTransformation:
    """Optimizer over the stage's trainable parameters only (frozen ones are not in ``trainable``)."""
    def adamw(scale: float):
        return optax.adamw(schedule(stage.lr * scale, stage.steps, stage.warmup, final_fraction),
                           b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                           mask=decay_mask)

    groups = {"base": adamw(1.0)}
    groups.update({f"g{i}": adamw(scale) for i, (_, scale) in enumerate(stage.lr_scale)})
    chain = [optax.clip_by_global_norm(grad_clip)] if grad_clip else []
    chain.append(optax.multi_transform(groups, lr_labels(stage, trainable)))
    return optax.chain(*chain)


def decay_mask(params):
    """Decay mask: True for matrices; stacked-layer parameters (under a ``layers`` key) have an extra
    leading axis, so they need ``ndim >= 3``."""

    def decays(path, x):
        stacked = any(getattr(p, "key", None) == "layers" for p in path)
        return x.ndim >= (3 if stacked else 2)

    return jax.tree_util.tree_map_with_path(decays, params)


def opt_state_shardings(opt_state, params):
    """Shardings of an optimizer state that mirror the parameters it was made from.

    ``params`` is the abstract trainable state whose leaves carry shardings. Every optimizer leaf whose
    key path *ends with* a parameter's key path and has that parameter's shape (Adam's ``mu``/``nu``,
    ``…mu['llm']['layers']…['kernel'].value`` ↔ ``['llm']['layers']…['kernel'].value``) takes that
    parameter's sharding; the rest (step counts, scalars) are replicated. Matching by path rather than
    by compiling ``optimizer.init`` is needed because ``init`` never reads parameter values, so
    sharding propagation has nothing to propagate from (the compiled outputs land on one device).
    """
    by_path = {tuple(p): x for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}
    mesh = next(iter(by_path.values())).sharding.mesh

    def one(path, leaf):
        path = tuple(path)
        for start in range(len(path)):
            param = by_path.get(path[start:])
            if param is not None and param.shape == leaf.shape:
                return param.sharding
        return NamedSharding(mesh, P())

    return jax.tree_util.tree_map_with_path(one, opt_state)
