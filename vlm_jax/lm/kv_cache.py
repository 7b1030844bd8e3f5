"""Static-capacity KV cache whose slots carry big_vision ``mask_ar`` groups, so masks come from the cache.

Layout (one pytree, sharded like activations: ``act_batch``, ``act_len``, ``act_kv_heads``):

* ``k, v: [layers, B, S, K, Dh]`` keys (already rotated) and values of ``S`` slots per row;
* ``groups: int32 [B, S]`` attention group of the token in each slot (``vlm_jax.nn.attention``);
* ``valid: bool [B, S]`` False for empty slots and padding;
* ``end: int32 [B]`` per-row write position (one past the last valid slot).

One call of the decoder writes ``T`` tokens (a prompt, or one / a few generated tokens) into slots
``end .. end + T - 1`` of each row. The caller builds the attention mask of that call with
:meth:`KVCache.extend_mask`: the new tokens' groups continue from the row's last valid group
(``group = last + cumsum(mask_ar)``, so ``mask_ar = 1`` is causal and a run of zeros is a prefix-LM
prefix), and the key side is the whole cache after the write. After the call ``end`` moves one past the
last *valid* written slot, so:

* left-padded prompts (``[pad pad a b c]``) continue after ``c``;
* right-padded prompts (``[a b c pad pad]``) continue at the first pad slot, overwriting it.

Writes past the capacity are dropped (JAX cannot raise inside ``jit``): size the cache for
prompt + generated tokens. Positions for RoPE are the caller's: :func:`prompt_positions` for a padded
prompt and :func:`next_positions` for the next token.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding

from vlm_jax.lm.config import LMConfig
from vlm_jax.nn.attention import AttentionMask
from vlm_jax.sharding import constrain, logical_to_spec

CACHE_AXES = (None, "act_batch", "act_len", "act_kv_heads", None)
SLOT_AXES = ("act_batch", "act_len")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class KVCache:
    """Per-layer keys/values plus per-slot group ids and validity (see module docstring)."""

    k: jax.Array
    v: jax.Array
    groups: jax.Array
    valid: jax.Array
    end: jax.Array

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    def write_slots(self, num_tokens: int) -> jax.Array:
        """``int32 [B, T]`` slots the next ``T`` tokens go to."""
        return self.end[:, None] + jnp.arange(num_tokens, dtype=jnp.int32)

    def extend_mask(self, mask_ar: jax.Array, valid: jax.Array) -> AttentionMask:
        """Mask for writing ``T`` new tokens with ``mask_ar: int [B, T]`` and ``valid: bool [B, T]``.

        Queries: the new tokens (``[B, T]``); keys: all ``S`` slots after the write.
        """
        if mask_ar.shape != valid.shape or mask_ar.shape[0] != self.end.shape[0]:
            raise ValueError(f"mask_ar {mask_ar.shape} and valid {valid.shape} must both be [B={self.end.shape[0]}, T]")
        slots = self.write_slots(mask_ar.shape[1])
        last = jnp.max(jnp.where(self.valid, self.groups, 0), axis=1)
        q_groups = last[:, None] + jnp.cumsum(mask_ar.astype(jnp.int32), axis=1)
        kv_groups = write_slots(self.groups, q_groups, slots)
        kv_valid = write_slots(self.valid, valid.astype(bool), slots)
        return AttentionMask(q_groups, kv_groups, kv_valid, causal=True)

    def advance(self, k: jax.Array, v: jax.Array, mask: AttentionMask, slots: jax.Array) -> KVCache:
        """The cache after a decoder call wrote ``k, v`` at ``slots`` with ``mask`` from :meth:`extend_mask`."""
        if mask.kv_valid.shape != self.valid.shape or not mask.causal:
            raise ValueError(f"a cached call needs a causal mask over the {self.valid.shape} cache slots "
                             f"(build it with KVCache.extend_mask), got kv_valid {mask.kv_valid.shape}")
        in_range = slots < self.capacity
        written = jnp.take_along_axis(mask.kv_valid, jnp.minimum(slots, self.capacity - 1), axis=1) & in_range
        end = jnp.maximum(self.end, jnp.max(jnp.where(written, slots + 1, 0), axis=1))
        return KVCache(constrain(k, CACHE_AXES), constrain(v, CACHE_AXES), mask.kv_groups, mask.kv_valid,
                       end.astype(jnp.int32))


def write_slots(buffer: jax.Array, new: jax.Array, slots: jax.Array) -> jax.Array:
    """Scatter ``new: [B, T, ...]`` into ``buffer: [B, S, ...]`` at ``slots: [B, T]``; out-of-range writes drop."""
    rows = jnp.arange(buffer.shape[0])[:, None]
    return buffer.at[rows, slots].set(new.astype(buffer.dtype), mode="drop")


def init_cache(cfg: LMConfig, batch: int, capacity: int, dtype=jnp.float32) -> KVCache:
    """An empty cache: ``k, v`` zeros ``[layers, batch, capacity, K, Dh]`` in ``dtype`` (pass the decoder's compute
    dtype, ``decoder.dtypes.compute_dtype``)."""
    if capacity <= 0 or batch <= 0:
        raise ValueError(f"cache batch and capacity must be positive, got {batch}, {capacity}")
    shape = (cfg.num_layers, batch, capacity, cfg.num_kv_heads, cfg.head_dim)
    zeros = constrain(jnp.zeros(shape, dtype), CACHE_AXES)
    return KVCache(zeros, zeros, constrain(jnp.zeros((batch, capacity), jnp.int32), SLOT_AXES),
                   constrain(jnp.zeros((batch, capacity), bool), SLOT_AXES), jnp.zeros((batch,), jnp.int32))


def cache_shardings(cache: KVCache, mesh: Mesh) -> KVCache:
    """``NamedSharding`` per cache field (for ``jax.jit`` in/out shardings)."""

    def named(x, names):
        return NamedSharding(mesh, logical_to_spec(names, x.shape, mesh))

    return KVCache(named(cache.k, CACHE_AXES), named(cache.v, CACHE_AXES), named(cache.groups, SLOT_AXES),
                   named(cache.valid, SLOT_AXES), named(cache.end, ("act_batch",)))


def prompt_positions(valid: jax.Array) -> jax.Array:
    """``int32 [B, L]`` RoPE positions of a padded prompt: 0, 1, ... over the valid tokens (pads get 0 or
    repeat the previous position; they are masked anyway)."""
    return jnp.maximum(jnp.cumsum(valid.astype(jnp.int32), axis=1) - 1, 0)


def next_positions(cache: KVCache) -> jax.Array:
    """``int32 [B]`` position of the next token of each row (number of valid cached tokens)."""
    return jnp.sum(cache.valid, axis=1, dtype=jnp.int32)
