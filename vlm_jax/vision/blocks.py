"""Building blocks of the ViT encoder: multi-head attention, MLP and one pre-norm encoder layer.

Projection kernels keep the head axis separate (``[D, H, Dh]`` and ``[H, Dh, D]``) so the
``vit_heads`` logical axis can be sharded (``vlm_jax.sharding``). One layer is

    x = x + ls1 · Attn(norm1(x))
    x = x + ls2 · MLP(norm2(x))

with ``ls1 = ls2 = 1`` unless ``cfg.layer_scale`` (InternViT's ``lambda_1/2``), following the HF
``CLIPEncoderLayer`` / ``SiglipEncoderLayer`` / ``InternVLVisionLayer`` forward passes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vlm_jax.nn.attention import AttentionMask, dot_product_attention
from vlm_jax.nn.layers import Dense, LayerNorm, RMSNorm, activation
from vlm_jax.vision.config import ViTConfig


def make_norm(cfg: ViTConfig, kind: str | None = None) -> LayerNorm | RMSNorm:
    """The encoder's norm (``cfg.norm``, or ``kind``) over ``[.., D]``."""
    dtypes = dict(dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype))
    if (kind or cfg.norm) == "rms":
        return RMSNorm(cfg.hidden, eps=cfg.norm_eps, **dtypes)
    return LayerNorm(cfg.hidden, eps=cfg.norm_eps, **dtypes)


class HeadsProjection(nnx.Module):
    """``[B, T, D] -> [B, T, H, Dh]`` with ``kernel [D, H, Dh]`` and optional ``bias [H, Dh]``."""

    def __init__(self, cfg: ViTConfig, *, use_bias: bool, rngs: nnx.Rngs):
        shape = (cfg.hidden, cfg.heads, cfg.head_dim)
        init = nnx.initializers.lecun_normal(in_axis=0, out_axis=(1, 2))
        self.kernel = nnx.Param(init(rngs.params(), shape, jnp.dtype(cfg.param_dtype)),
                                out_sharding=("vit_embed", "vit_heads", "vit_head_dim"))
        self.bias = (nnx.Param(jnp.zeros(shape[1:], jnp.dtype(cfg.param_dtype)),
                               out_sharding=("vit_heads", "vit_head_dim")) if use_bias else None)
        self.dtype = jnp.dtype(cfg.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jnp.einsum("btd,dhk->bthk", x.astype(self.dtype), self.kernel[...].astype(self.dtype))
        return y if self.bias is None else y + self.bias[...].astype(self.dtype)


class HeadsMerge(nnx.Module):
    """``[B, T, H, Dh] -> [B, T, D]`` with ``kernel [H, Dh, D]`` and ``bias [D]``."""

    def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs):
        shape = (cfg.heads, cfg.head_dim, cfg.hidden)
        init = nnx.initializers.lecun_normal(in_axis=(0, 1), out_axis=2)
        self.kernel = nnx.Param(init(rngs.params(), shape, jnp.dtype(cfg.param_dtype)),
                                out_sharding=("vit_heads", "vit_head_dim", "vit_embed"))
        self.bias = nnx.Param(jnp.zeros((cfg.hidden,), jnp.dtype(cfg.param_dtype)), out_sharding=("vit_embed",))
        self.dtype = jnp.dtype(cfg.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jnp.einsum("bthk,hkd->btd", x.astype(self.dtype), self.kernel[...].astype(self.dtype))
        return y + self.bias[...].astype(self.dtype)


class Attention(nnx.Module):
    """Multi-head attention ``[B, T, D] (queries), [B, S, D] (keys/values) -> [B, T, D]``.

    With ``cfg.qk_norm`` the projected queries and keys are RMS-normalised over the full
    ``H·Dh`` width before splitting heads (HF ``InternVLVisionAttention``).
    """

    def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs):
        self.q = HeadsProjection(cfg, use_bias=cfg.attn_bias, rngs=rngs)
        self.k = HeadsProjection(cfg, use_bias=cfg.attn_bias, rngs=rngs)
        self.v = HeadsProjection(cfg, use_bias=cfg.attn_bias, rngs=rngs)
        self.out = HeadsMerge(cfg, rngs=rngs)
        norm_args = dict(eps=cfg.qk_norm_eps, dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype))
        self.q_norm = RMSNorm(cfg.hidden, **norm_args) if cfg.qk_norm else None
        self.k_norm = RMSNorm(cfg.hidden, **norm_args) if cfg.qk_norm else None
        self.implementation = cfg.attention_impl

    @staticmethod
    def _norm_heads(norm: RMSNorm | None, x: jax.Array) -> jax.Array:
        if norm is None:
            return x
        b, t, h, k = x.shape
        return norm(x.reshape(b, t, h * k)).reshape(b, t, h, k)

    def __call__(self, x: jax.Array, kv: jax.Array | None = None, mask: AttentionMask | None = None) -> jax.Array:
        kv = x if kv is None else kv
        q = self._norm_heads(self.q_norm, self.q(x))
        k = self._norm_heads(self.k_norm, self.k(kv))
        v = self.v(kv)
        return self.out(dot_product_attention(q, k, v, mask, implementation=self.implementation))


class MLP(nnx.Module):
    """``fc2(act(fc1(x)))``: ``[.., D] -> [.., mlp] -> [.., D]``."""

    def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs):
        dtypes = dict(dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype))
        self.fc1 = Dense(cfg.hidden, cfg.mlp, axes=("vit_embed", "vit_mlp"), rngs=rngs, **dtypes)
        self.fc2 = Dense(cfg.mlp, cfg.hidden, axes=("vit_mlp", "vit_embed"), rngs=rngs, **dtypes)
        self.act = activation(cfg.act)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(self.act(self.fc1(x)))


class EncoderLayer(nnx.Module):
    """One pre-norm transformer layer ``[B, T, D] -> [B, T, D]``."""

    def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs):
        self.norm1 = make_norm(cfg)
        self.attn = Attention(cfg, rngs=rngs)
        self.norm2 = make_norm(cfg)
        self.mlp = MLP(cfg, rngs=rngs)
        pdt = jnp.dtype(cfg.param_dtype)
        self.ls1 = nnx.Param(jnp.ones((cfg.hidden,), pdt), out_sharding=("norm",)) if cfg.layer_scale else None
        self.ls2 = nnx.Param(jnp.ones((cfg.hidden,), pdt), out_sharding=("norm",)) if cfg.layer_scale else None

    @staticmethod
    def _scaled(scale: nnx.Param | None, y: jax.Array) -> jax.Array:
        return y if scale is None else y * scale[...].astype(y.dtype)

    def __call__(self, x: jax.Array, mask: AttentionMask | None = None) -> jax.Array:
        x = x + self._scaled(self.ls1, self.attn(self.norm1(x), mask=mask))
        return x + self._scaled(self.ls2, self.mlp(self.norm2(x)))
