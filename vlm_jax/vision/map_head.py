"""Multi-head attention pooling ("MAP") head of SigLIP (Zhai et al. 2023, big_vision ``MAPHead``).

A learned probe query attends over the patch tokens, then a residual MLP block:

    y = MHA(probe, x, x);  y = y + MLP(LN(y))

matching HF ``SiglipMultiheadAttentionPoolingHead`` (``torch.nn.MultiheadAttention`` always has
q/k/v biases and no qk-norm, whatever the encoder layers use).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from vlm_jax.nn.axis_names import VIT_AXES
from vlm_jax.nn.mlp import MLP
from vlm_jax.nn.multi_head import MultiHeadAttention
from vlm_jax.nn.precision import Dtypes
from vlm_jax.vision.blocks import attention_spec, layer_norm
from vlm_jax.vision.config import ViTConfig


class MAPHead(nnx.Module):
    """``tokens [N, P, D] -> pooled [N, D]``."""

    def __init__(self, cfg: ViTConfig, *, dtypes: Dtypes, rngs: nnx.Rngs):
        self.probe = nnx.Param(nnx.initializers.normal(1.0)(rngs.params(), (cfg.hidden,), dtypes.param_dtype),
                               out_sharding=("vit_embed",))
        spec = dataclasses.replace(attention_spec(cfg), qkv_bias=True, qk_norm_eps=None)
        self.attn = MultiHeadAttention(spec, dtypes=dtypes, rngs=rngs)
        self.norm = layer_norm(cfg, dtypes)
        self.mlp = MLP(cfg.hidden, cfg.mlp, act=cfg.act, axes=VIT_AXES, dtypes=dtypes, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        probe = jnp.broadcast_to(self.probe[...].astype(tokens.dtype), (tokens.shape[0], 1, tokens.shape[-1]))
        y = self.attn(probe, tokens)
        y = y + self.mlp(self.norm(y))
        return y[:, 0]
