"""Next-token selection as pure functions: repetition penalty, temperature, top-k, top-p, greedy / sampling.

The order and semantics follow transformers' ``generate`` (``LogitsProcessorList`` built by
``_get_logits_processor``): repetition penalty → temperature → top-k → top-p → argmax or a categorical draw.

* Repetition penalty (CTRL, Keskar et al. 2019 §4.1; HF ``RepetitionPenaltyLogitsProcessor`` without
  ``prompt_ignore_length``): every id that occurs in the prompt (all valid prompt tokens, image
  placeholders included, as HF's ``input_ids``) or among the tokens generated so far has its logit
  divided by ``penalty`` when positive and multiplied by it when negative, once per id however often it
  occurred.
* Top-k (HF ``TopKLogitsWarper``): keep the logits ``>=`` the k-th largest (ties at the threshold stay).
* Top-p (Holtzman et al. 2020 §3.1; HF ``TopPLogitsWarper``): in ascending order, drop the tokens whose
  cumulative probability is ``<= 1 - p``; the most likely token always stays.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How the next token is chosen; the defaults are greedy decoding.

    Attributes:
      temperature: 0 → greedy (argmax); > 0 → sample from ``softmax(logits / temperature)``.
      top_k: keep the k most likely tokens (0: off). Sampling only.
      top_p: nucleus mass in (0, 1] (1: off). Sampling only.
      repetition_penalty: > 0; 1 is off, > 1 discourages repeats (applies to greedy too).
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.greedy and (self.top_k or self.top_p < 1):
            raise ValueError("top_k / top_p only apply when sampling: set temperature > 0")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def uses_history(self) -> bool:
        """Whether selection depends on the ids seen so far (repetition penalty)."""
        return self.repetition_penalty != 1


GREEDY = SamplingConfig()


def token_presence(tokens: jax.Array, valid: jax.Array, vocab_size: int) -> jax.Array:
    """``bool [B, V]``: which ids occur among the valid entries of ``tokens: int [B, L]``."""
    rows = jnp.arange(tokens.shape[0])[:, None]
    return jnp.zeros((tokens.shape[0], vocab_size), bool).at[rows, tokens].max(valid.astype(bool), mode="drop")


def mark_present(presence: jax.Array, token: jax.Array, active: jax.Array) -> jax.Array:
    """``presence [B, V]`` with ``token: int [B]`` added in the rows where ``active: bool [B]``."""
    rows = jnp.arange(token.shape[0])
    return presence.at[rows, token].max(active, mode="drop")


def apply_repetition_penalty(logits: jax.Array, presence: jax.Array, penalty: float) -> jax.Array:
    """``logits [B, V]`` with the ids in ``presence`` penalised (module docstring)."""
    penalised = jnp.where(logits < 0, logits * penalty, logits / penalty)
    return jnp.where(presence, penalised, logits)


def top_k_mask(logits: jax.Array, k: int) -> jax.Array:
    """``bool [B, V]``: True for the logits at least as large as the k-th largest of their row."""
    k = min(k, logits.shape[-1])
    kth = jax.lax.top_k(logits, k)[0][..., -1:]
    return logits >= kth


def top_p_mask(logits: jax.Array, p: float) -> jax.Array:
    """``bool [B, V]``: the nucleus of mass ``p`` (ascending cumulative probability ``> 1 - p``, plus the top)."""
    order = jnp.argsort(logits, axis=-1)
    ascending = jnp.take_along_axis(logits, order, axis=-1)
    cumulative = jnp.cumsum(jax.nn.softmax(ascending, axis=-1), axis=-1)
    keep_sorted = (cumulative > 1 - p).at[..., -1].set(True)
    rows = jnp.arange(logits.shape[0])[:, None]
    return jnp.zeros(logits.shape, bool).at[rows, order].set(keep_sorted)


def warp_logits(logits: jax.Array, presence: jax.Array | None, cfg: SamplingConfig) -> jax.Array:
    """``float32 [B, V]`` scores to argmax / sample from: penalty, temperature, then ``-inf`` outside top-k / top-p."""
    logits = logits.astype(jnp.float32)
    if cfg.uses_history:
        if presence is None:
            raise ValueError("a repetition penalty needs the presence mask of prompt and generated ids")
        logits = apply_repetition_penalty(logits, presence, cfg.repetition_penalty)
    if cfg.greedy:
        return logits
    logits = logits / cfg.temperature
    if cfg.top_k:
        logits = jnp.where(top_k_mask(logits, cfg.top_k), logits, -jnp.inf)
    if cfg.top_p < 1:
        logits = jnp.where(top_p_mask(logits, cfg.top_p), logits, -jnp.inf)
    return logits


def select_tokens(logits: jax.Array, presence: jax.Array | None, cfg: SamplingConfig, key: jax.Array) -> jax.Array:
    """``int32 [B]`` next tokens from ``logits [B, V]``: argmax when greedy, else a draw seeded by ``key``."""
    scores = warp_logits(logits, presence, cfg)
    if cfg.greedy:
        return jnp.argmax(scores, axis=-1).astype(jnp.int32)
    return jax.random.categorical(key, scores, axis=-1).astype(jnp.int32)
