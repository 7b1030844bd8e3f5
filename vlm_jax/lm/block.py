"""One pre-norm decoder layer: ``x + Attn(RMSNorm(x))`` then ``x + SwiGLU(RMSNorm(x))`` (Llama, arXiv 2302.13971 §2)."""

from __future__ import annotations

import jax
from flax import nnx

from vlm_jax.lm.attention import SelfAttention
from vlm_jax.lm.config import LMConfig
from vlm_jax.nn.attention import AttentionMask
from vlm_jax.nn.layers import Dense, RMSNorm
from vlm_jax.sharding import constrain

ACT_AXES = ("act_batch", "act_len", "act_embed")


class SwiGLU(nnx.Module):
    """``down(silu(gate(x)) * up(x))``: ``[B, T, D] → [B, T, D]`` through ``[B, T, F]`` (arXiv 2002.05202)."""

    def __init__(self, cfg: LMConfig, *, rngs: nnx.Rngs):
        kw = dict(use_bias=False, dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype, rngs=rngs)
        self.gate = Dense(cfg.hidden_size, cfg.mlp_dim, axes=("embed", "mlp"), **kw)
        self.up = Dense(cfg.hidden_size, cfg.mlp_dim, axes=("embed", "mlp"), **kw)
        self.down = Dense(cfg.mlp_dim, cfg.hidden_size, axes=("mlp", "embed"), **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = constrain(jax.nn.silu(self.gate(x)) * self.up(x), ("act_batch", "act_len", "act_mlp"))
        return self.down(hidden)


class DecoderLayer(nnx.Module):
    """Attention + MLP sub-blocks with RMSNorm before each and residual connections."""

    def __init__(self, cfg: LMConfig, *, rngs: nnx.Rngs):
        norm = dict(eps=cfg.norm_eps, dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype)
        self.attn_norm = RMSNorm(cfg.hidden_size, **norm)
        self.attn = SelfAttention(cfg, rngs=rngs)
        self.mlp_norm = RMSNorm(cfg.hidden_size, **norm)
        self.mlp = SwiGLU(cfg, rngs=rngs)

    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array, mask: AttentionMask,
                 kv: tuple[jax.Array, jax.Array] | None = None, slots: jax.Array | None = None):
        """``x: [B, T, D]`` → ``([B, T, D], new kv | None)``; see :class:`SelfAttention` for ``kv``/``slots``."""
        attn_out, kv = self.attn(self.attn_norm(x), cos, sin, mask, kv, slots)
        x = constrain(x + attn_out, ACT_AXES)
        x = constrain(x + self.mlp(self.mlp_norm(x)), ACT_AXES)
        return x, kv
