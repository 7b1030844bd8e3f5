"""Batched autoregressive generation: prefill the prompt into a KV cache, then decode inside ONE jitted
``jax.lax.while_loop`` (DESIGN.md "Data flow": the decoder consumes text embeddings with the visual
tokens scattered in).

Layout. Prompts are left-padded (right-aligned, :func:`left_align`), so every row's last prompt token
sits in column ``L - 1`` and the logits of that column start generation. RoPE positions count valid
tokens (:func:`vlm_jax.lm.kv_cache.prompt_positions`, then ``next_positions``), exactly as the full
forward :meth:`VLM.__call__` numbers them. The cache has the static capacity ``L + max_new_tokens``.

Stopping. A row finishes when it emits any of ``stop_ids`` (the stop id is kept in the output and
counted in ``lengths``); afterwards it emits ``pad_id`` and feeds nothing into its cache. The loop ends
when every row has finished or ``max_new_tokens`` tokens were produced.

Compilation. :func:`make_generate_fn` returns one jitted function per (model structure, stop ids,
sampling); it compiles once per batch shape and ``max_new_tokens`` (a static argument). Under an
ambient mesh the cache and activations follow the logical activation axes (``init_cache`` constrains
the cache like ``cache_shardings``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vlm_jax.evaluate.sampling import GREEDY, SamplingConfig, mark_present, select_tokens, token_presence
from vlm_jax.lm.kv_cache import init_cache, next_positions, prompt_positions
from vlm_jax.model import VLM

PER_TOKEN_KEYS = ("tokens", "valid", "image_slots", "prompt_mask", "loss_mask", "mask_ar")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class GenerationOutput:
    """``tokens int32 [B, N]`` (pad after a row's stop), ``lengths int32 [B]`` (tokens before the padding,
    stop id included), ``finished bool [B]`` (the row emitted a stop id)."""

    tokens: jax.Array
    lengths: jax.Array
    finished: jax.Array


def left_align(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Host-side: shift every row's per-token arrays (:data:`PER_TOKEN_KEYS`) right so that its last valid
    token lands in the last column; the padding after it wraps round to the front. Other keys (pixels,
    grid...) are unchanged. A right-padded pipeline Batch ``[a b c _ _]`` becomes ``[_ _ a b c]``."""
    valid = np.asarray(batch["valid"], bool)
    if valid.ndim != 2:
        raise ValueError(f"batch['valid'] must be [B, L], got shape {valid.shape}")
    length = valid.shape[1]
    last = np.where(valid.any(axis=1), length - 1 - np.argmax(valid[:, ::-1], axis=1), length - 1)
    source = (np.arange(length)[None, :] - (length - 1 - last)[:, None]) % length
    out = dict(batch)
    for key in PER_TOKEN_KEYS:
        if key in batch:
            values = np.asarray(batch[key])
            if values.shape != valid.shape:
                raise ValueError(f"batch[{key!r}] has shape {values.shape}, expected [B, L] = {valid.shape}")
            out[key] = np.take_along_axis(values, source, axis=1)
    return out


def _decode_loop(model: VLM, batch: Mapping[str, jax.Array], rng: jax.Array, *, max_new_tokens: int,
                 stop_ids: tuple[int, ...], sampling: SamplingConfig, pad_id: int) -> GenerationOutput:
    """Prefill + while-loop decode of a left-aligned batch (module docstring)."""
    llm = model.llm
    embeds, valid = model.embed_inputs(batch)
    b, length = valid.shape
    mask_ar = batch.get("mask_ar", jnp.ones((b, length), jnp.int32))
    cache = init_cache(llm.cfg, b, length + max_new_tokens, llm.dtypes.compute_dtype)
    hidden, cache = llm(embeds, positions=prompt_positions(valid), mask=cache.extend_mask(mask_ar, valid),
                        cache=cache)
    logits = llm.logits(hidden[:, -1:])[:, 0]
    presence = token_presence(batch["tokens"], batch["valid"], logits.shape[-1]) if sampling.uses_history else None
    stops = jnp.asarray(stop_ids, jnp.int32)

    def emit(i, logits, tokens, lengths, finished, presence):
        """Choose token ``i`` of every row and update the bookkeeping."""
        new = select_tokens(logits, presence, sampling, jax.random.fold_in(rng, i))
        active = ~finished
        new = jnp.where(active, new, pad_id)
        tokens = tokens.at[:, i].set(new)
        lengths = lengths + active.astype(jnp.int32)
        if presence is not None:
            presence = mark_present(presence, new, active)
        finished = finished | (active & jnp.isin(new, stops))
        return tokens, lengths, finished, presence

    tokens = jnp.full((b, max_new_tokens), pad_id, jnp.int32)
    first = emit(0, logits, tokens, jnp.zeros((b,), jnp.int32), jnp.zeros((b,), bool), presence)
    carry = (jnp.asarray(1, jnp.int32), cache, *first)

    def cond(carry):
        i, _, _, _, finished, _ = carry
        return (i < max_new_tokens) & ~jnp.all(finished)

    def body(carry):
        i, cache, tokens, lengths, finished, presence = carry
        last = jax.lax.dynamic_slice_in_dim(tokens, i - 1, 1, axis=1)
        feed = ~finished[:, None]
        hidden, cache = llm(llm.embed(last), positions=next_positions(cache)[:, None],
                            mask=cache.extend_mask(jnp.ones((b, 1), jnp.int32), feed), cache=cache)
        return (i + 1, cache, *emit(i, llm.logits(hidden)[:, 0], tokens, lengths, finished, presence))

    _, _, tokens, lengths, finished, _ = jax.lax.while_loop(cond, body, carry)
    return GenerationOutput(tokens, lengths, finished)


@functools.lru_cache(maxsize=16)
def _cached_generate_fn(graphdef: nnx.GraphDef, stop_ids: tuple[int, ...], sampling: SamplingConfig, pad_id: int):
    def run(state: nnx.State, batch: Mapping[str, jax.Array], rng: jax.Array, max_new_tokens: int):
        return _decode_loop(nnx.merge(graphdef, state), batch, rng, max_new_tokens=max_new_tokens,
                            stop_ids=stop_ids, sampling=sampling, pad_id=pad_id)

    return jax.jit(run, static_argnames=("max_new_tokens",))


def make_generate_fn(graphdef: nnx.GraphDef, *, stop_ids: Sequence[int], sampling: SamplingConfig = GREEDY,
                     pad_id: int = 0):
    """``fn(state, batch, rng, max_new_tokens) -> GenerationOutput``, jitted with ``max_new_tokens`` static.

    ``batch`` must be left-aligned (:func:`left_align`); ``rng`` is a ``jax.random.key`` (unused when
    greedy). Functions are cached per (graphdef, stop ids, sampling, pad id), so repeated calls with the
    same batch shape and ``max_new_tokens`` reuse one compilation.
    """
    stop = tuple(sorted({int(s) for s in stop_ids}))
    if not stop:
        raise ValueError("stop_ids is empty: pass at least the EOS id (data.templates.answer_stop_ids)")
    return _cached_generate_fn(graphdef, stop, sampling, int(pad_id))


def generate(model: VLM, batch: Mapping[str, np.ndarray], *, max_new_tokens: int, stop_ids: Sequence[int],
             sampling: SamplingConfig = GREEDY, rng: jax.Array | None = None,
             pad_id: int = 0) -> GenerationOutput:
    """Generate up to ``max_new_tokens`` for a (right- or left-padded) Batch ``[B, L]``; see the module docstring.

    ``rng`` (a ``jax.random.key``) is required when sampling and ignored by greedy decoding.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if rng is None:
        if not sampling.greedy:
            raise ValueError("sampling (temperature > 0) needs an explicit rng key")
        rng = jax.random.key(0)
    graphdef, state = nnx.split(model)
    fn = make_generate_fn(graphdef, stop_ids=stop_ids, sampling=sampling, pad_id=pad_id)
    return fn(state, left_align(batch), rng, max_new_tokens=max_new_tokens)
