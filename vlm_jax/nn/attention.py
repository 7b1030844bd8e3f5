"""The single attention entry point: masks as data (:mod:`vlm_jax.nn.attention_mask`), implementation
chosen per backend.

Implementations: ``"xla"`` (CPU, decode, reference), ``"cudnn"`` (GPU flash attention via
``jax.nn.dot_product_attention``), ``"splash"`` (TPU Pallas kernel inside ``shard_map``, see
``vlm_jax.nn.splash``); ``"auto"`` picks by the platform of the ambient mesh (or the default backend).
All of them compute the logits and the softmax in float32 whatever the input dtype.

:func:`attention_probs` gives the probabilities themselves (float32), for modules that read them
(GSWA's weight head). The mask constructors are re-exported here so callers import one module.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vlm_jax.nn import splash
from vlm_jax.nn.attention_mask import AttentionMask, ar_mask, causal_mask, full_mask
from vlm_jax.nn.platform import target_platform

__all__ = ["IMPLEMENTATIONS", "AttentionMask", "ar_mask", "attention_probs", "causal_mask", "default_implementation",
           "dot_product_attention", "full_mask"]

IMPLEMENTATIONS = ("auto", "xla", "cudnn", "splash")
_MASKED_LOGIT = 0.7 * float(jnp.finfo(jnp.float32).min)  # finite: an all-masked row is uniform, never NaN


def default_implementation() -> str:
    """``"splash"`` on TPU, ``"cudnn"`` on GPU, else ``"xla"``."""
    return {"tpu": "splash", "gpu": "cudnn"}.get(target_platform(), "xla")


def _check_heads(q: jax.Array, k: jax.Array, v: jax.Array) -> None:
    if q.ndim != 4 or k.ndim != 4 or k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[3] != k.shape[3] \
            or q.shape[2] % k.shape[2]:
        raise ValueError(f"expected q [B, T, H, Dh] and k, v [B, S, K, Dh] with H % K == 0; got {q.shape}, "
                         f"{k.shape}, {v.shape}")


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: AttentionMask | None, *,
                          implementation: str = "auto", scale: float | None = None) -> jax.Array:
    """Scaled dot-product attention. ``q: [B, T, H, Dh]``, ``k, v: [B, S, K, Dh]`` with ``H % K == 0``
    (grouped-query attention) → ``[B, T, H, Dh]`` in ``q.dtype``.

    Fully masked query rows (padding) return finite values that callers must ignore.
    """
    _check_heads(q, k, v)
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"unknown attention implementation {implementation!r}; known: {IMPLEMENTATIONS}")
    if implementation == "auto":
        implementation = default_implementation()
        if implementation == "splash" and mask is not None and mask.causal and q.shape[1] != k.shape[1]:
            implementation = "xla"  # KV-cache decoding (T != S): the kernel's causal mask is by index
    if implementation == "splash":
        return splash.splash_attention(q, k, v, mask, scale=scale)
    dense = None if mask is None else mask.dense()
    if implementation == "cudnn" and q.dtype not in (jnp.bfloat16, jnp.float16):
        implementation = "xla"  # cuDNN flash attention needs half precision
    return jax.nn.dot_product_attention(q, k, v, mask=dense, scale=scale, implementation=implementation)


def attention_probs(q: jax.Array, k: jax.Array, mask: AttentionMask | None, *,
                    scale: float | None = None) -> jax.Array:
    """``float32 [B, H, T, S]`` softmax probabilities of ``q: [B, T, H, Dh]`` over ``k: [B, S, K, Dh]``
    (``H % K == 0``); logits scaled by ``scale`` (default ``1/sqrt(Dh)``), computed and normalised in float32.
    Masked keys get probability exactly 0 (uniform rows where every key is masked)."""
    _check_heads(q, k, k)
    b, t, h, dh = q.shape
    kv_heads = k.shape[2]
    scale = dh ** -0.5 if scale is None else scale
    grouped = q.reshape(b, t, kv_heads, h // kv_heads, dh)
    logits = jnp.einsum("btkgd,bskd->bkgts", grouped, k, preferred_element_type=jnp.float32)
    logits = logits.reshape(b, h, t, k.shape[1]).astype(jnp.float32) * scale
    if mask is not None:
        logits = jnp.where(mask.dense(), logits, _MASKED_LOGIT)
    return jax.nn.softmax(logits, axis=-1)
