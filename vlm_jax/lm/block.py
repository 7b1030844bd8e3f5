"""One pre-norm decoder layer: ``x + Attn(RMSNorm(x))`` then ``x + SwiGLU(RMSNorm(x))`` (Llama, arXiv 2302.13971 §2)."""

from __future__ import annotations

import jax
from flax import nnx

from vlm_jax.lm.attention import attention_spec, self_attention
from vlm_jax.lm.config import LMConfig
from vlm_jax.nn.attention import AttentionMask
from vlm_jax.nn.einsum import Dense
from vlm_jax.nn.layers import RMSNorm
from vlm_jax.nn.multi_head import MultiHeadAttention
from vlm_jax.nn.precision import Dtypes
from vlm_jax.sharding import constrain

ACT_AXES = ("act_batch", "act_len", "act_embed")


class SwiGLU(nnx.Module):
    """``down(silu(gate(x)) * up(x))``: ``[B, T, D] → [B, T, D]`` through ``[B, T, F]`` (arXiv 2002.05202)."""

    def __init__(self, cfg: LMConfig, *, dtypes: Dtypes, rngs: nnx.Rngs):
        kw = dict(use_bias=False, dtypes=dtypes, rngs=rngs)
        self.gate = Dense(cfg.hidden_size, cfg.mlp_dim, axes=("embed", "mlp"), **kw)
        self.up = Dense(cfg.hidden_size, cfg.mlp_dim, axes=("embed", "mlp"), **kw)
        self.down = Dense(cfg.mlp_dim, cfg.hidden_size, axes=("mlp", "embed"), **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = constrain(jax.nn.silu(self.gate(x)) * self.up(x), ("act_batch", "act_len", "act_mlp"))
        return self.down(hidden)


class DecoderLayer(nnx.Module):
    """Attention + MLP sub-blocks with RMSNorm before each and residual connections."""

    def __init__(self, cfg: LMConfig, *, dtypes: Dtypes, rngs: nnx.Rngs):
        norm = dict(eps=cfg.norm_eps, dtypes=dtypes)
        self.attn_norm = RMSNorm(cfg.hidden_size, **norm)
        self.attn = MultiHeadAttention(attention_spec(cfg), dtypes=dtypes, rngs=rngs)
        self.mlp_norm = RMSNorm(cfg.hidden_size, **norm)
        self.mlp = SwiGLU(cfg, dtypes=dtypes, rngs=rngs)

    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array, mask: AttentionMask,
                 kv: tuple[jax.Array, jax.Array] | None = None, slots: jax.Array | None = None):
        """``x: [B, T, D]`` → ``([B, T, D], new kv | None)``; see :func:`~vlm_jax.lm.attention.self_attention`
        for ``kv``/``slots``."""
        attn_out, kv = self_attention(self.attn, self.attn_norm(x), (cos, sin), mask, kv, slots)
        x = constrain(x + attn_out, ACT_AXES)
        x = constrain(x + self.mlp(self.mlp_norm(x)), ACT_AXES)
        return x, kv
