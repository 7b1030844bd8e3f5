"""Grow the LLM vocabulary for added tokens (the image token) the way ``transformers`` does.

``PreTrainedModel.resize_token_embeddings(n, pad_to_multiple_of, mean_resizing=True)`` (transformers 5.23) keeps
the old rows and fills each added row of the embedding table and of the untied ``lm_head`` (as ``[V, D]`` rows)
with a sample of ``N(mean, 1e-9 · cov)`` of the old rows (float32 statistics, ``cov = Xcᵀ Xc / V``, Hewitt's
vocabulary expansion); when ``1e-9 · cov`` is not positive definite (Cholesky fails, e.g. ``V ≤ D``) every added
row is the mean. Sampling uses a JAX key, so the rows equal transformers' in distribution, not bit for bit (they
differ from the mean by ``≈ 3e-5 · std``).

Where it is called: a run that adds the image token to a checkpoint's tokenizer (``Tokenizer.with_image_token()``,
the papers' Vicuna and Llama-3 starting points) has a model config whose ``llm.vocab_size`` is the grown size
(``padded_vocab(tokenizer.vocab_size)``, as in the paper presets of ``vlm_jax.presets``), larger than the
checkpoint's tables. Two entry points, the same rows for the same key:

* at load time, ``load_with_grown_vocab(model.llm, lambda: load_base_weights(model, hf_dir), checkpoint_vocab,
  key=...)`` (``vlm_jax.train.loop._initial_params``; ``checkpoint_vocab`` = the checkpoint config's text
  ``vocab_size``), or around any loader of the LLM;
* on parameters already loaded at the checkpoint's vocabulary, ``fit_vocab_to_tokenizer(params, tokenizer,
  key=..., pad_to_multiple_of=VOCAB_MULTIPLE)``, then ``nnx.merge`` with the graphdef of the grown config.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import jax
import jax.numpy as jnp
from flax import nnx

MEAN_RESIZING_EPSILON = 1e-9  # transformers' scale of the old rows' covariance
VOCAB_MULTIPLE = 64  # llava-hf's padding (32002 -> 32064); keeps the sharded vocab axis divisible
T = TypeVar("T")


def padded_vocab(num_tokens: int, multiple: int | None = VOCAB_MULTIPLE) -> int:
    """``num_tokens`` rounded up to a multiple of ``multiple`` (``resize_token_embeddings(pad_to_multiple_of=)``)."""
    if multiple is None:
        return num_tokens
    if not isinstance(multiple, int) or multiple <= 0:
        raise ValueError(f"pad_to_multiple_of must be a positive int, got {multiple!r}")
    return -(-num_tokens // multiple) * multiple


def added_rows(table: jax.Array, num_added: int, key: jax.Array) -> jax.Array:
    """Rows for ``num_added`` new tokens of ``table [V, D]``: a sample of ``N(mean, 1e-9 · cov)`` of its rows,
    or the mean when that covariance is not positive definite. Returns ``[num_added, D]`` in ``table.dtype``."""
    rows = table.astype(jnp.float32)
    mean = rows.mean(axis=0)
    centered = rows - mean
    cov = jnp.matmul(centered.T, centered, precision=jax.lax.Precision.HIGHEST) / rows.shape[0]
    scale_tril = jnp.linalg.cholesky(MEAN_RESIZING_EPSILON * cov)
    noise = jax.random.normal(key, (num_added, rows.shape[1]), jnp.float32)
    sampled = mean + jnp.matmul(noise, scale_tril.T, precision=jax.lax.Precision.HIGHEST)
    positive_definite = jnp.all(jnp.isfinite(scale_tril))
    return jnp.where(positive_definite, sampled, mean[None, :]).astype(table.dtype)


def grow_rows(table: jax.Array, vocab_size: int, key: jax.Array) -> jax.Array:
    """``table [V, D]`` → ``[vocab_size, D]``: the old rows, then :func:`added_rows`. Shrinking is refused."""
    old = table.shape[0]
    if vocab_size < old:
        raise ValueError(f"cannot shrink a vocabulary table from {old} to {vocab_size} rows")
    if vocab_size == old:
        return table
    return jnp.concatenate([table, added_rows(table, vocab_size - old, key)], axis=0)


# the decoder's vocabulary tables: (module attribute, parameter, stored as [D, V] — the rows of HF's lm_head.weight)
TABLES = (("embedder", "embedding", False), ("lm_head", "kernel", True))


def _grow_table(value: jax.Array, transposed: bool, vocab_size: int, key: jax.Array) -> jax.Array:
    grown = grow_rows(value.T if transposed else value, vocab_size, key)
    return grown.T if transposed else grown


def resize_vocab(params: nnx.State, vocab_size: int, *, key: jax.Array, at: tuple[str, ...] = ("llm",)) -> nnx.State:
    """``params`` with the decoder at path ``at`` grown to ``vocab_size`` tokens (``()`` for a bare Decoder).

    Grows ``embedder.embedding [V, D]`` and, when untied, ``lm_head.kernel [D, V]``, each with its own key. Other
    parameters are returned unchanged.
    """
    vocab_rows(params, at)  # a clear error when there is no decoder at ``at``
    tables = {(*at, module, name): transposed for module, name, transposed in TABLES}
    keys = dict(zip(tables, jax.random.split(key, len(tables))))
    out = []
    for path, var in nnx.to_flat_state(params):
        if path in tables:
            var = var.replace(_grow_table(var.get_value(), tables[path], vocab_size, keys[path]))
        out.append((path, var))
    return nnx.from_flat_state(out)


def vocab_rows(params: nnx.State, at: tuple[str, ...] = ("llm",)) -> int:
    """Rows of the decoder's embedding table at path ``at`` of ``params``."""
    embedding = dict(nnx.to_flat_state(params)).get((*at, "embedder", "embedding"))
    if embedding is None:
        raise KeyError(f"no decoder embedding at {'/'.join(at) or 'the root'} of the parameters")
    return embedding.get_value().shape[0]


def fit_vocab_to_tokenizer(params: nnx.State, tokenizer, *, key: jax.Array, pad_to_multiple_of: int | None = None,
                           at: tuple[str, ...] = ("llm",)) -> nnx.State:
    """``params`` with room for every id of ``tokenizer`` (a :class:`vlm_jax.data.tokenizer.Tokenizer`, e.g.
    after ``with_image_token()``): grown to ``padded_vocab(tokenizer.vocab_size, pad_to_multiple_of)`` rows when
    the tables are smaller, unchanged otherwise (a checkpoint's padded vocabulary, llava-hf's 32064, is kept)."""
    if vocab_rows(params, at) >= tokenizer.vocab_size:
        return params
    return resize_vocab(params, padded_vocab(tokenizer.vocab_size, pad_to_multiple_of), key=key, at=at)


def load_with_grown_vocab(decoder: nnx.Module, load: Callable[[], T], checkpoint_vocab: int, *, key: jax.Array) -> T:
    """Run ``load()``, which fills ``decoder`` (a :class:`vlm_jax.lm.decoder.Decoder`, possibly abstract, e.g. a
    VLM's ``llm`` under ``load_base_weights``) from a checkpoint whose tables have ``checkpoint_vocab`` rows, when
    the decoder is built at a larger ``cfg.vocab_size``: the tables take the checkpoint's shape for the load, then
    grow to the decoder's vocabulary (:func:`grow_rows`) on their original sharding. Returns what ``load`` returns.
    """
    vocab_size = decoder.cfg.vocab_size
    if checkpoint_vocab > vocab_size:
        raise ValueError(f"the checkpoint has {checkpoint_vocab} vocabulary rows > the model's {vocab_size}")
    if checkpoint_vocab == vocab_size:
        return load()
    tables = [(getattr(getattr(decoder, module), name), transposed) for module, name, transposed in TABLES
              if getattr(decoder, module) is not None]  # lm_head is None when tied
    originals = [var.get_value() for var, _ in tables]
    for (var, transposed), original in zip(tables, originals):
        dim = original.shape[0] if transposed else original.shape[1]
        shape = (dim, checkpoint_vocab) if transposed else (checkpoint_vocab, dim)
        var.set_value(jax.ShapeDtypeStruct(shape, original.dtype))
    try:
        result = load()
    except BaseException:
        for (var, _), original in zip(tables, originals):
            var.set_value(original)
        raise
    for (var, transposed), original, table_key in zip(tables, originals, jax.random.split(key, len(TABLES))):
        loaded = var.get_value()
        if isinstance(loaded, jax.ShapeDtypeStruct):
            raise ValueError("load() did not fill the decoder's vocabulary tables")
        grown = _grow_table(loaded, transposed, vocab_size, table_key)
        sharding = getattr(original, "sharding", None)
        var.set_value(grown if sharding is None else jax.device_put(grown, sharding))
    return result
