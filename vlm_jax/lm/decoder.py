"""The decoder LLM: token embedding, scanned pre-norm layers, final RMSNorm, (tied) output head.

Embedding is separate from the layers so that a VLM can scatter visual tokens into the embedded
sequence before running the layers (``DESIGN.md`` data flow).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vlm_jax.lm.block import ACT_AXES, DecoderLayer
from vlm_jax.lm.config import LMConfig
from vlm_jax.lm.kv_cache import KVCache
from vlm_jax.nn.attention import AttentionMask
from vlm_jax.nn.einsum import Dense
from vlm_jax.nn.layers import Embed, RMSNorm
from vlm_jax.nn.precision import FLOAT32, Dtypes
from vlm_jax.nn.rope import rope_tables
from vlm_jax.nn.stack import LayerStack
from vlm_jax.sharding import constrain


class Decoder(nnx.Module):
    """Llama / Qwen2 / InternLM2 decoder (:class:`LMConfig`).

    Parameters: ``embedder.embedding [V, D]``; ``layers`` (stacked ``[layers, ...]``, see
    :class:`DecoderLayer`); ``final_norm.scale [D]``; ``lm_head.kernel [D, V]`` unless tied. Parameters live in
    ``dtypes.param_dtype``, activations in ``dtypes.compute_dtype`` (float32 by default); logits are float32.
    """

    def __init__(self, cfg: LMConfig, *, dtypes: Dtypes = FLOAT32, rngs: nnx.Rngs):
        self.cfg = cfg
        self.dtypes = dtypes
        self.embedder = Embed(cfg.vocab_size, cfg.hidden_size, axes=("vocab", "embed"), dtypes=dtypes, rngs=rngs)
        self.layers = LayerStack(lambda r: DecoderLayer(cfg, dtypes=dtypes, rngs=r), cfg.num_layers, remat=cfg.remat,
                                 rngs=rngs)
        self.final_norm = RMSNorm(cfg.hidden_size, eps=cfg.norm_eps, dtypes=dtypes)
        self.lm_head = None if cfg.tie_embeddings else Dense(
            cfg.hidden_size, cfg.vocab_size, axes=("embed", "vocab"), use_bias=False, dtypes=dtypes, rngs=rngs)

    def embed(self, tokens: jax.Array) -> jax.Array:
        """``int [B, L]`` token ids → ``[B, L, D]`` embeddings (compute dtype)."""
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be [B, L], got shape {tokens.shape}")
        return constrain(self.embedder(tokens), ACT_AXES)

    def __call__(self, x: jax.Array, *, positions: jax.Array, mask: AttentionMask,
                 cache: KVCache | None = None) -> tuple[jax.Array, KVCache | None]:
        """Run all layers on ``x: [B, L, D]`` with RoPE ``positions: int [B, L]``.

        ``mask``: queries ``[B, L]``; keys ``[B, L]`` without a cache (``causal_mask`` / ``ar_mask``) or
        the cache's ``[B, S]`` slots with one (``cache.extend_mask(mask_ar, valid)``). With a cache the
        ``L`` tokens are written at the cache's write position and the updated cache is returned.
        Returns ``(hidden [B, L, D] after the final norm, new cache | None)``.
        """
        cfg = self.cfg
        if x.ndim != 3 or x.shape[-1] != cfg.hidden_size:
            raise ValueError(f"x must be [B, L, {cfg.hidden_size}], got shape {x.shape}")
        if positions.shape != x.shape[:2]:
            raise ValueError(f"positions {positions.shape} must be [B, L] = {x.shape[:2]}")
        if mask.q_groups.shape != x.shape[:2]:
            raise ValueError(f"mask queries {mask.q_groups.shape} must be [B, L] = {x.shape[:2]}")
        cos, sin = rope_tables(positions, cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)
        x = constrain(x.astype(self.dtypes.compute_dtype), ACT_AXES)
        if cache is None:
            if mask.kv_valid.shape != x.shape[:2]:
                raise ValueError(f"without a cache the mask keys {mask.kv_valid.shape} must be [B, L] = {x.shape[:2]}")
            hidden, _ = self.layers.scan(lambda layer, h, _: layer(h, cos, sin, mask), x)
            return self.final_norm(hidden), None
        if cache.k.shape[0] != cfg.num_layers or cache.k.shape[1] != x.shape[0]:
            raise ValueError(f"cache k {cache.k.shape} does not match {cfg.num_layers} layers, batch {x.shape[0]}")
        if mask.kv_valid.shape != cache.valid.shape:
            raise ValueError(f"with a cache the mask keys {mask.kv_valid.shape} must be the cache slots "
                             f"{cache.valid.shape}: build the mask with cache.extend_mask(mask_ar, valid)")
        slots = cache.write_slots(x.shape[1])
        hidden, (k, v) = self.layers.scan(lambda layer, h, kv: layer(h, cos, sin, mask, kv, slots), x,
                                          (cache.k, cache.v))
        return self.final_norm(hidden), cache.advance(k, v, mask, slots)

    def logits(self, hidden: jax.Array) -> jax.Array:
        """``[B, L, D]`` → ``float32 [B, L, V]`` through the ``lm_head`` or the tied embedding table."""
        out = self.embedder.attend(hidden) if self.lm_head is None else self.lm_head(hidden)
        return constrain(out.astype(jnp.float32), ("act_batch", "act_len", "act_vocab"))
