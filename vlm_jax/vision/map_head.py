"""Multi-head attention pooling ("MAP") head of SigLIP (Zhai et al. 2023, big_vision ``MAPHead``).

A learned probe query attends over the patch tokens, then a residual MLP block:

    y = MHA(probe, x, x);  y = y + MLP(LN(y))

matching HF ``SiglipMultiheadAttentionPoolingHead`` (``torch.nn.MultiheadAttention`` always has
q/k/v biases and no qk-norm, whatever the encoder layers use).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vlm_jax.nn.layers import LayerNorm
from vlm_jax.vision.blocks import MLP, Attention
from vlm_jax.vision.config import ViTConfig


class MAPHead(nnx.Module):
    """``tokens [N, P, D] -> pooled [N, D]``."""

    def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs):
        head_cfg = cfg.replace(attn_bias=True, qk_norm=False)
        pdt = jnp.dtype(cfg.param_dtype)
        self.probe = nnx.Param(nnx.initializers.normal(1.0)(rngs.params(), (cfg.hidden,), pdt),
                               out_sharding=("vit_embed",))
        self.attn = Attention(head_cfg, rngs=rngs)
        self.norm = LayerNorm(cfg.hidden, eps=cfg.norm_eps, dtype=jnp.dtype(cfg.dtype), param_dtype=pdt)
        self.mlp = MLP(head_cfg, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        probe = jnp.broadcast_to(self.probe[...].astype(tokens.dtype), (tokens.shape[0], 1, tokens.shape[-1]))
        y = self.attn(probe, tokens)
        y = y + self.mlp(self.norm(y))
        return y[:, 0]
