"""The ViT's layers as :mod:`vlm_jax.nn` blocks, configured from a :class:`~vlm_jax.vision.config.ViTConfig`.

One encoder layer is :class:`vlm_jax.nn.transformer_block.TransformerBlock` (pre-norm attention + MLP,
InternViT's layer scale) with ``vit_*`` logical axis names; projection kernels keep the head axis
separate (``[D, H, Dh]`` and ``[H, Dh, D]``) so ``vit_heads`` can be sharded (``vlm_jax.sharding``).
"""

from __future__ import annotations

from flax import nnx

from vlm_jax.nn.axis_names import VIT_AXES
from vlm_jax.nn.layers import LayerNorm, RMSNorm, make_norm
from vlm_jax.nn.multi_head import AttentionSpec
from vlm_jax.nn.precision import Dtypes
from vlm_jax.nn.transformer_block import TransformerBlock
from vlm_jax.vision.config import ViTConfig


def attention_spec(cfg: ViTConfig) -> AttentionSpec:
    """The encoder's self-attention: ``H`` heads of ``D / H``, q/k/v biases by ``attn_bias`` (the output
    projection always has one), InternViT's qk RMSNorm by ``qk_norm``."""
    return AttentionSpec(dim=cfg.hidden, heads=cfg.heads, qkv_bias=cfg.attn_bias,
                         qk_norm_eps=cfg.qk_norm_eps if cfg.qk_norm else None, axes=VIT_AXES,
                         implementation=cfg.attention_impl)


def encoder_layer(cfg: ViTConfig, *, dtypes: Dtypes, rngs: nnx.Rngs) -> TransformerBlock:
    """One pre-norm encoder layer ``[N, T, D] → [N, T, D]``."""
    return TransformerBlock(attention_spec(cfg), cfg.mlp, act=cfg.act, norm=cfg.norm, norm_eps=cfg.norm_eps,
                            layer_scale=cfg.layer_scale, dtypes=dtypes, rngs=rngs)


def layer_norm(cfg: ViTConfig, dtypes: Dtypes) -> LayerNorm | RMSNorm:
    """The tower's LayerNorms outside the layers (CLIP's pre-LN, the final norm, SigLIP's head)."""
    return make_norm("layer", cfg.hidden, eps=cfg.norm_eps, dtypes=dtypes)
