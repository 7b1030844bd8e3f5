"""SliME text-guided selection of local tokens with static shapes (spec/methods.md §6.4 steps 4–7, §6.7).

Pure functions, no parameters (the ``TextGuidedRouterCosine`` router has none):

1. :func:`selection_scores`: cosine similarity of every visual token with every text token, masked text
   positions contribute 0, reduced over the text tokens (``"sum"`` [code] or ``"mean"`` [paper]), optional
   ``N(0, noise_std)`` noise in training, softmax with a temperature over the *valid* visual tokens only.
2. :func:`top_p_keep`: sort descending, cumulative sum, keep "the tokens whose cumulative probability is
   ≤ γ, plus one more" [code]. Precisely: the token of descending rank r is kept iff the probability mass
   of the tokens ranked before it, computed as the inclusive float cumulative sum at rank r-1, is ≤ γ
   (rank 0 always). Equivalently: the smallest prefix whose inclusive mass *exceeds* γ, or every token
   if none does. γ ≥ 1 keeps every valid token exactly (no float round-off drops). Ties sort stably.
3. :func:`compact`: kept tokens moved to the front in their original (spatial) order by a stable argsort,
   with a prefix ``valid`` mask and the kept count.

Text tokens [project default, deviation from the code]: the caller passes the *instruction* tokens only
(``prompt_mask``). The code uses every non-image token of the sample, including the answer during training
(label leakage into the selection and a train/test mismatch); pass ``valid & ~image_slots`` to reproduce it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

REDUCTIONS = ("sum", "mean")
COSINE_EPS = 1e-8  # torch.nn.functional.cosine_similarity default


def cosine_similarity(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a [B, V, D]``, ``b [B, L, D]`` → ``float32 [B, V, L]``: ``a·b / (max(|a|, ε)·max(|b|, ε))``."""
    a32, b32 = a.astype(jnp.float32), b.astype(jnp.float32)
    na = jnp.maximum(jnp.linalg.norm(a32, axis=-1, keepdims=True), COSINE_EPS)
    nb = jnp.maximum(jnp.linalg.norm(b32, axis=-1, keepdims=True), COSINE_EPS)
    return jnp.einsum("bvd,bld->bvl", a32 / na, b32 / nb)


def masked_softmax(logits: jax.Array, valid: jax.Array) -> jax.Array:
    """Softmax over the last axis restricted to ``valid``; invalid entries (and all-invalid rows) get 0."""
    peak = jnp.max(jnp.where(valid, logits, -jnp.inf), axis=-1, keepdims=True)
    peak = jnp.where(jnp.isfinite(peak), peak, 0.0)
    e = jnp.where(valid, jnp.exp(logits - peak), 0.0)
    return e / jnp.maximum(e.sum(-1, keepdims=True), jnp.finfo(e.dtype).tiny)


def selection_scores(visual: jax.Array, visual_valid: jax.Array, text: jax.Array, text_mask: jax.Array, *,
                     reduce: str = "sum", noise_std: float = 0.0, rng: jax.Array | None = None,
                     temperature: float = 1.0) -> jax.Array:
    """Selection probabilities ``float32 [B, V]`` (0 at invalid visual tokens).

    Args:
      visual: ``[B, V, D]`` local tokens in LLM space; ``visual_valid: bool [B, V]``.
      text: ``[B, L, D]`` text embeddings; ``text_mask: bool [B, L]`` the tokens that guide the selection.
      reduce: ``"sum"`` [code] or ``"mean"`` (over the masked text tokens) [paper].
      noise_std: std of Gaussian noise added to the reduced scores (training only); needs ``rng`` if > 0.
      temperature: softmax temperature.
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"selection_scores: reduce={reduce!r}; known: {REDUCTIONS}")
    if visual.shape[0] != text.shape[0] or visual.shape[-1] != text.shape[-1]:
        raise ValueError(f"selection_scores: visual {visual.shape} and text {text.shape} disagree on B or D")
    sim = jnp.where(text_mask[:, None, :], cosine_similarity(visual, text), 0.0)
    scores = sim.sum(-1)
    if reduce == "mean":
        scores = scores / jnp.maximum(text_mask.sum(-1, keepdims=True), 1)
    if noise_std:
        if rng is None:
            raise ValueError("selection_scores: noise_std > 0 needs an explicit rng")
        scores = scores + noise_std * jax.random.normal(rng, scores.shape)
    return masked_softmax(scores / temperature, visual_valid)


def top_p_keep(probs: jax.Array, valid: jax.Array, gamma: float | jax.Array) -> jax.Array:
    """Keep mask ``bool [B, V]`` of the top-p rule described in the module docstring (padded never kept)."""
    key = jnp.where(valid, probs, -1.0)
    order = jnp.argsort(-key, axis=-1, stable=True)
    mass = jnp.cumsum(jnp.take_along_axis(jnp.where(valid, probs, 0.0), order, axis=-1), axis=-1)
    before = jnp.concatenate([jnp.zeros_like(mass[:, :1]), mass[:, :-1]], axis=-1)
    gamma = jnp.asarray(gamma, mass.dtype)
    keep_sorted = (before <= gamma) | (gamma >= 1.0)
    keep = jnp.take_along_axis(keep_sorted, jnp.argsort(order, axis=-1), axis=-1)
    return keep & valid


def compact(tokens: jax.Array, keep: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Stable compaction: ``tokens [B, V, D]``, ``keep bool [B, V]`` → kept tokens first in original order
    ``[B, V, D]`` (tail zeroed), ``valid bool [B, V]`` (a prefix) and ``n_kept int32 [B]``."""
    order = jnp.argsort(jnp.logical_not(keep).astype(jnp.int32), axis=-1, stable=True)
    n_kept = keep.sum(-1).astype(jnp.int32)
    valid = jnp.arange(keep.shape[-1])[None, :] < n_kept[:, None]
    out = jnp.take_along_axis(tokens, order[..., None], axis=1)
    return jnp.where(valid[..., None], out, 0).astype(tokens.dtype), valid, n_kept
