"""One pre-norm transformer encoder block (Vaswani et al. 2017 with pre-LN, as in ViT, Dosovitskiy et al. 2021 §3.1)::

    x = x + ls1 · Attn(norm1(x))
    x = x + ls2 · MLP(norm2(x))

``ls1 = ls2 = 1`` unless ``layer_scale`` (InternViT's ``lambda_1/2``, per-channel ``[D]``). The ViT's layers
(HF ``CLIPEncoderLayer`` / ``SiglipEncoderLayer`` / ``InternVLVisionLayer``) and GSWA's view transformer are
this block.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vlm_jax.nn.attention_mask import AttentionMask
from vlm_jax.nn.layers import make_norm
from vlm_jax.nn.mlp import MLP
from vlm_jax.nn.multi_head import AttentionSpec, MultiHeadAttention
from vlm_jax.nn.precision import FLOAT32, Dtypes


class TransformerBlock(nnx.Module):
    """``[B, T, D] → [B, T, D]`` with ``D = attention.dim``; ``norm`` is a ``vlm_jax.nn.layers.NORMS`` kind."""

    def __init__(self, attention: AttentionSpec, mlp_dim: int, *, act: str, norm: str = "layer",
                 norm_eps: float = 1e-6, layer_scale: bool = False, dtypes: Dtypes = FLOAT32, rngs: nnx.Rngs):
        d = attention.dim
        self.norm1 = make_norm(norm, d, eps=norm_eps, dtypes=dtypes)
        self.attn = MultiHeadAttention(attention, dtypes=dtypes, rngs=rngs)
        self.norm2 = make_norm(norm, d, eps=norm_eps, dtypes=dtypes)
        self.mlp = MLP(d, mlp_dim, act=act, axes=attention.axes, dtypes=dtypes, rngs=rngs)
        pdt = dtypes.param_dtype
        self.ls1 = nnx.Param(jnp.ones((d,), pdt), out_sharding=("norm",)) if layer_scale else None
        self.ls2 = nnx.Param(jnp.ones((d,), pdt), out_sharding=("norm",)) if layer_scale else None

    @staticmethod
    def _scaled(scale: nnx.Param | None, y: jax.Array) -> jax.Array:
        return y if scale is None else y * scale[...].astype(y.dtype)

    def __call__(self, x: jax.Array, mask: AttentionMask | None = None) -> jax.Array:
        """``mask``: queries and keys ``[B, T]`` (None: full attention)."""
        x = x + self._scaled(self.ls1, self.attn(self.norm1(x), mask=mask))
        return x + self._scaled(self.ls2, self.mlp(self.norm2(x)))
