"""Grouped-query self-attention of the decoder LLM (GQA, arXiv 2305.13245) with RoPE and KV-cache writes.

The module is the shared :class:`vlm_jax.nn.multi_head.MultiHeadAttention` in its ``"flat"`` parameter
layout, the Llama checkpoint layout: ``q_kernel [D, H, Dh]``, ``k_kernel, v_kernel [D, K, Dh]``,
``o_kernel [H, Dh, D]`` (logical names ``embed``, ``heads``, ``kv_heads``, ``head_dim``) and optional
q/k/v biases ``[H|K, Dh]`` (Qwen2); no output bias. Tensor parallelism splits whole heads.
"""

from __future__ import annotations

import jax

from vlm_jax.lm.config import LMConfig
from vlm_jax.lm.kv_cache import write_slots
from vlm_jax.nn.attention import AttentionMask
from vlm_jax.nn.axis_names import LM_AXES
from vlm_jax.nn.multi_head import AttentionSpec, MultiHeadAttention, Rope
from vlm_jax.sharding import constrain


def attention_spec(cfg: LMConfig) -> AttentionSpec:
    """The decoder's causal / prefix-LM GQA self-attention."""
    return AttentionSpec(dim=cfg.hidden_size, heads=cfg.num_heads, kv_heads=cfg.num_kv_heads, head_dim=cfg.head_dim,
                         qkv_bias=cfg.qkv_bias, out_bias=False, axes=LM_AXES,
                         implementation=cfg.resolved_attention_impl, layout="flat")


def self_attention(attn: MultiHeadAttention, x: jax.Array, rope: Rope, mask: AttentionMask,
                   kv: tuple[jax.Array, jax.Array] | None = None,
                   slots: jax.Array | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
    """``x: [B, T, D]``; ``rope = (cos, sin) [B, T, Dh]``; ``mask`` queries ``[B, T]``.

    Without a cache the keys are the ``T`` tokens themselves. With ``kv = (k, v)`` of one layer's cache
    (``[B, S, K, Dh]``) the new keys/values are written at ``slots: [B, T]`` and the queries attend over all
    ``S`` slots (XLA attention: the decode path). Returns ``([B, T, D], new kv | None)``.
    """
    if kv is None:
        return attn(x, mask=mask, rope=rope), None
    keys_axes = attn.spec.axes.act_keys
    k = constrain(write_slots(kv[0], attn.keys(x, rope), slots), keys_axes)
    v = constrain(write_slots(kv[1], attn.values(x), slots), keys_axes)
    return attn.attend(attn.queries(x, rope), k, v, mask, implementation="xla"), (k, v)
