"""A small pre-LN Transformer over one token per view (tile), used by GSWA (spec/methods.md §3.2 step 3).

The sequence is the ``N`` views of one image (``N ≤ 13`` for InternVL2 with 12 tiles + thumbnail), so
attention is computed explicitly: the probabilities themselves are needed by GSWA's attention weight
head, and at this length a fused kernel brings nothing. Padded views are masked out as keys; their
own rows are computed but must be ignored by the caller.

One block [inferred: standard ViT-style encoder block]::

    x = x + Attn(LN1(x))      # multi-head self-attention over the valid views
    x = x + MLP(LN2(x))       # Linear(d, r·d) → act → Linear(r·d, d)

Parameter axes: residual width ``adapter_embed``, head / MLP width ``adapter_mlp``
(``vlm_jax.sharding``). Everything runs in float32 (the module is tiny).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from vlm_jax.nn.layers import Dense, LayerNorm, activation

_MASKED_LOGIT = -1e30  # finite, so an all-padding example gives a uniform (ignored) row, never NaN


def masked_attention_probs(q: jax.Array, k: jax.Array, key_valid: jax.Array) -> jax.Array:
    """Softmax attention probabilities ``[B, H, T, S]`` of ``q: [B, T, H, Dh]`` over ``k: [B, S, H, Dh]``.

    ``key_valid: bool [B, S]``; invalid keys get probability exactly 0 (when a row has any valid key).
    Logits are scaled by ``1/sqrt(Dh)``.
    """
    logits = jnp.einsum("bthd,bshd->bhts", q, k) / math.sqrt(q.shape[-1])
    logits = jnp.where(key_valid[:, None, None, :], logits, _MASKED_LOGIT)
    return jax.nn.softmax(logits, axis=-1)


class QueryKeyProjection(nnx.Module):
    """``x [B, N, d]`` → queries and keys ``[B, N, H, d/H]`` (two ``Dense(d, d)`` with bias).

    ``zero_query=True`` zero-initialises the query kernel and bias: every logit is then exactly 0 and
    the attention is uniform over the valid keys, while the (random) keys keep the query gradient
    non-zero. (Zeroing both projections would make both gradients vanish.)
    """

    def __init__(self, dim: int, heads: int, *, zero_query: bool = False, rngs: nnx.Rngs):
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by heads={heads}")
        q_init = nnx.initializers.zeros if zero_query else nnx.initializers.lecun_normal()
        self.query = Dense(dim, dim, axes=("adapter_embed", "adapter_mlp"), kernel_init=q_init, rngs=rngs)
        self.key = Dense(dim, dim, axes=("adapter_embed", "adapter_mlp"), rngs=rngs)
        self.heads = heads

    def split_heads(self, x: jax.Array) -> jax.Array:
        """``[B, N, d]`` → ``[B, N, H, d/H]``."""
        return x.reshape(*x.shape[:-1], self.heads, x.shape[-1] // self.heads)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.split_heads(self.query(x)), self.split_heads(self.key(x))


class TileSelfAttention(nnx.Module):
    """Multi-head self-attention over views: ``x [B, N, d]``, ``valid bool [B, N]`` → ``[B, N, d]``."""

    def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs):
        self.qk = QueryKeyProjection(dim, heads, rngs=rngs)
        self.value = Dense(dim, dim, axes=("adapter_embed", "adapter_mlp"), rngs=rngs)
        self.out = Dense(dim, dim, axes=("adapter_mlp", "adapter_embed"), rngs=rngs)

    def __call__(self, x: jax.Array, valid: jax.Array) -> jax.Array:
        q, k = self.qk(x)
        v = self.qk.split_heads(self.value(x))
        probs = masked_attention_probs(q, k, valid)
        y = jnp.einsum("bhts,bshd->bthd", probs, v)
        return self.out(y.reshape(*y.shape[:-2], -1))


class TileBlock(nnx.Module):
    """One pre-LN encoder block over views (module docstring): ``[B, N, d]`` → ``[B, N, d]``."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, *, act: str, norm_eps: float, rngs: nnx.Rngs):
        self.norm1 = LayerNorm(dim, eps=norm_eps)
        self.attn = TileSelfAttention(dim, heads, rngs=rngs)
        self.norm2 = LayerNorm(dim, eps=norm_eps)
        self.fc1 = Dense(dim, mlp_dim, axes=("adapter_embed", "adapter_mlp"), rngs=rngs)
        self.fc2 = Dense(mlp_dim, dim, axes=("adapter_mlp", "adapter_embed"), rngs=rngs)
        self.act = activation(act)

    def __call__(self, x: jax.Array, valid: jax.Array) -> jax.Array:
        x = x + self.attn(self.norm1(x), valid)
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))
