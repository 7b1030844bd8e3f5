"""Grouped-query self-attention of the decoder LLM (GQA, arXiv 2305.13245) with RoPE and KV-cache writes.

Projection kernels keep the head axes explicit so tensor parallelism splits whole heads:
``q: [D, H, Dh]``, ``k, v: [D, K, Dh]``, ``o: [H, Dh, D]`` (logical names ``embed``, ``heads``,
``kv_heads``, ``head_dim``); optional q/k/v biases ``[H|K, Dh]`` (Qwen2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vlm_jax.lm.config import LMConfig
from vlm_jax.lm.kv_cache import write_slots
from vlm_jax.nn.attention import AttentionMask, dot_product_attention
from vlm_jax.nn.rope import apply_rope
from vlm_jax.sharding import constrain

Q_AXES = ("act_batch", "act_len", "act_heads", None)
KV_AXES = ("act_batch", "act_len", "act_kv_heads", None)


def _kernel(rngs: nnx.Rngs, shape, in_axis, out_axis, axes, dtype) -> nnx.Param:
    init = nnx.initializers.lecun_normal(in_axis=in_axis, out_axis=out_axis)
    return nnx.Param(init(rngs.params(), shape, dtype), out_sharding=axes)


class SelfAttention(nnx.Module):
    """Causal / prefix-LM GQA over ``x: [B, T, D]`` → ``[B, T, D]``."""

    def __init__(self, cfg: LMConfig, *, rngs: nnx.Rngs):
        d, h, kh, dh, pdt = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.weight_dtype
        self.q_kernel = _kernel(rngs, (d, h, dh), 0, (1, 2), ("embed", "heads", "head_dim"), pdt)
        self.k_kernel = _kernel(rngs, (d, kh, dh), 0, (1, 2), ("embed", "kv_heads", "head_dim"), pdt)
        self.v_kernel = _kernel(rngs, (d, kh, dh), 0, (1, 2), ("embed", "kv_heads", "head_dim"), pdt)
        self.o_kernel = _kernel(rngs, (h, dh, d), (0, 1), 2, ("heads", "head_dim", "embed"), pdt)
        if cfg.qkv_bias:
            self.q_bias = nnx.Param(jnp.zeros((h, dh), pdt), out_sharding=("heads", "head_dim"))
            self.k_bias = nnx.Param(jnp.zeros((kh, dh), pdt), out_sharding=("kv_heads", "head_dim"))
            self.v_bias = nnx.Param(jnp.zeros((kh, dh), pdt), out_sharding=("kv_heads", "head_dim"))
        else:
            self.q_bias = self.k_bias = self.v_bias = None
        self.dtype = cfg.compute_dtype
        self.implementation = cfg.resolved_attention_impl

    def _project(self, x: jax.Array, kernel: nnx.Param, bias: nnx.Param | None) -> jax.Array:
        y = jnp.einsum("btd,dhk->bthk", x, kernel[...].astype(self.dtype))
        return y if bias is None else y + bias[...].astype(self.dtype)

    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array, mask: AttentionMask,
                 kv: tuple[jax.Array, jax.Array] | None = None,
                 slots: jax.Array | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
        """``x: [B, T, D]``; ``cos, sin: [B, T, Dh]``; ``mask`` queries ``[B, T]``.

        Without a cache the keys are the ``T`` tokens themselves. With ``kv = (k, v)`` of one layer's
        cache (``[B, S, K, Dh]``) the new keys/values are written at ``slots: [B, T]`` and the queries
        attend over all ``S`` slots (XLA attention: the decode path). Returns ``([B, T, D], new kv)``.
        """
        x = x.astype(self.dtype)
        q = constrain(apply_rope(self._project(x, self.q_kernel, self.q_bias), cos, sin), Q_AXES)
        k = constrain(apply_rope(self._project(x, self.k_kernel, self.k_bias), cos, sin), KV_AXES)
        v = constrain(self._project(x, self.v_kernel, self.v_bias), KV_AXES)
        implementation = self.implementation
        if kv is not None:
            k = constrain(write_slots(kv[0], k, slots), KV_AXES)
            v = constrain(write_slots(kv[1], v, slots), KV_AXES)
            implementation = "xla"
        out = dot_product_attention(q, k.astype(self.dtype), v.astype(self.dtype), mask,
                                    implementation=implementation)
        out = constrain(out, Q_AXES)
        y = jnp.einsum("bthk,hkd->btd", out, self.o_kernel[...].astype(self.dtype))
        return y, (None if kv is None else (k, v))
