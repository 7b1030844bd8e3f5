"""Next-token cross-entropy on answer tokens, with an optional z-loss (PaLM §5)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def next_token_loss(logits: jax.Array, tokens: jax.Array, loss_mask: jax.Array,
                    z_loss: float = 0.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean cross-entropy of predicting ``tokens[:, t+1]`` from position ``t`` where ``loss_mask[:, t+1]``.

    Args: ``logits float32 [B, L, V]``, ``tokens int [B, L]``, ``loss_mask bool [B, L]`` (True on answer
      tokens). ``z_loss`` adds ``z_loss · mean(logsumexp²)`` over the same positions.
    Returns: scalar loss and metrics (``ce``, ``z``, ``tokens``: number of predicted tokens, ``correct``).
    """
    logits = logits[:, :-1].astype(jnp.float32)
    target = tokens[:, 1:]
    mask = loss_mask[:, 1:].astype(jnp.float32)
    lse = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, target[..., None], axis=-1)[..., 0]
    n = jnp.maximum(mask.sum(), 1.0)
    ce = ((lse - target_logit) * mask).sum() / n
    z = (jnp.square(lse) * mask).sum() / n
    correct = ((logits.argmax(-1) == target) * mask).sum()
    return ce + z_loss * z, {"ce": ce, "z": z, "tokens": mask.sum(), "correct": correct}
