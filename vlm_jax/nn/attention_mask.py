"""Attention masks as data (big_vision's ``mask_ar`` idea), shared by every attention implementation.

Every token has an *attention group* (the cumulative sum of ``mask_ar``), and query ``t`` may see key
``s`` iff ``group[s] <= group[t]`` and key ``s`` is valid. ``mask_ar = 1`` everywhere is a causal mask;
``mask_ar = 0`` over a prefix then ``1`` is a prefix-LM mask (the prefix attends bidirectionally); a
:class:`AttentionMask` with ``causal=False`` is full attention over valid keys (the ViT, cross-attention).
KV-cache decoding uses the same form with the cached keys' groups.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class AttentionMask:
    """Which keys each query may attend to.

    Attributes:
      q_groups: ``int32 [B, T]`` attention group of each query.
      kv_groups: ``int32 [B, S]`` attention group of each key.
      kv_valid: ``bool [B, S]`` False for padding / empty cache slots.
      causal: static; False means full attention over valid keys (groups ignored).
    """

    q_groups: jax.Array
    kv_groups: jax.Array
    kv_valid: jax.Array
    causal: bool = dataclasses.field(default=True, metadata=dict(static=True))

    def dense(self) -> jax.Array:
        """``bool [B, 1, T, S]`` mask for the XLA / cuDNN paths."""
        allowed = jnp.broadcast_to(self.kv_valid[:, None, :],
                                   (self.kv_valid.shape[0], self.q_groups.shape[1], self.kv_valid.shape[1]))
        if self.causal:
            allowed = allowed & (self.kv_groups[:, None, :] <= self.q_groups[:, :, None])
        return allowed[:, None]


def full_mask(valid: jax.Array, num_queries: int | None = None) -> AttentionMask:
    """Bidirectional attention over the valid keys ``valid: bool [B, S]``; ``num_queries`` (default ``S``,
    self-attention) queries per example."""
    b, s = valid.shape
    zeros = jnp.zeros((b, s), jnp.int32)
    q_groups = zeros if num_queries is None else jnp.zeros((b, num_queries), jnp.int32)
    return AttentionMask(q_groups, zeros, valid, causal=False)


def ar_mask(mask_ar: jax.Array, valid: jax.Array) -> AttentionMask:
    """Causal / prefix-LM mask from ``mask_ar: int [B, T]`` (1 = autoregressive token) and ``valid``.

    A token with ``mask_ar = 0`` joins the group of the token before it, so a run of zeros at the start
    is a bidirectional prefix.
    """
    groups = jnp.cumsum(mask_ar.astype(jnp.int32), axis=-1)
    return AttentionMask(groups, groups, valid, causal=True)


def causal_mask(valid: jax.Array) -> AttentionMask:
    """Plain causal mask over ``valid: bool [B, T]``."""
    return ar_mask(jnp.ones(valid.shape, jnp.int32), valid)
