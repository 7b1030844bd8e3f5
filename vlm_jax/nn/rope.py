"""Rotary position embeddings (RoFormer, arXiv 2104.09864 §3.4) in the Hugging Face "rotate_half" layout.

The head dimension is split into two halves ``x = [x1, x2]`` (not interleaved pairs):
``rope(x) = x * cos + [-x2, x1] * sin`` with ``cos, sin = cos/sin(pos * [f, f])`` and
``f_i = theta ** (-2i / Dh)``. This is the convention of transformers' Llama / Qwen2 and of the
InternLM2 remote code, so their checkpoints load without permuting q/k rows.

Frequency scalings (``transformers.modeling_rope_utils``, checked in ``tests/test_lm_rope.py``):

* ``linear``  (position interpolation, arXiv 2306.15595): ``f / factor``.
* ``llama3``  (Llama 3.1): low frequencies (wavelength > L0 / low_freq_factor) divided by ``factor``,
  high ones (wavelength < L0 / high_freq_factor) kept, a smooth ramp between; ``L0`` is
  ``original_max_len``.
* ``dynamic`` (dynamic NTK): when the sequence is longer than ``original_max_len``, the base becomes
  ``theta * (factor * n / L0 - (factor - 1)) ** (Dh / (Dh - 2))`` with ``n = max(positions) + 1`` over
  the whole call, as transformers computes it per forward. Tokens already in a KV cache keep the
  rotation of the call that wrote them (transformers behaves the same way).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

SCALING_KINDS = ("linear", "llama3", "dynamic")


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """A RoPE frequency scaling. ``original_max_len`` is needed by ``llama3`` and ``dynamic``."""

    kind: str
    factor: float
    original_max_len: int | None = None
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0

    def __post_init__(self):
        if self.kind not in SCALING_KINDS:
            raise ValueError(f"unknown rope scaling {self.kind!r}; known: {SCALING_KINDS}")
        if self.factor <= 0:
            raise ValueError(f"rope scaling factor must be positive, got {self.factor}")
        if self.kind in ("llama3", "dynamic") and not self.original_max_len:
            raise ValueError(f"rope scaling {self.kind!r} needs original_max_len")
        if self.kind == "llama3" and not self.high_freq_factor > self.low_freq_factor:
            raise ValueError("llama3 rope scaling needs high_freq_factor > low_freq_factor")


def inverse_frequencies(head_dim: int, theta: float, scaling: RopeScaling | None = None,
                        seq_len: jax.Array | int | None = None) -> jax.Array:
    """``float32 [Dh / 2]`` rotation frequencies; ``seq_len`` (scalar) is used by ``dynamic`` only."""
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head_dim, got {head_dim}")
    exponents = jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim
    if scaling is not None and scaling.kind == "dynamic" and seq_len is not None:
        n = jnp.maximum(jnp.asarray(seq_len, jnp.float32), float(scaling.original_max_len))
        ratio = scaling.factor * n / scaling.original_max_len - (scaling.factor - 1.0)
        theta = theta * ratio ** (head_dim / (head_dim - 2))
    inv = 1.0 / (jnp.asarray(theta, jnp.float32) ** exponents)
    if scaling is None or scaling.kind == "dynamic":
        return inv
    if scaling.kind == "linear":
        return inv / scaling.factor
    # llama3
    wavelen = 2.0 * math.pi / inv
    low_wavelen = scaling.original_max_len / scaling.low_freq_factor
    high_wavelen = scaling.original_max_len / scaling.high_freq_factor
    smooth = (scaling.original_max_len / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor)
    scaled = jnp.where(wavelen > low_wavelen, inv / scaling.factor, inv)
    between = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return jnp.where(between, (1.0 - smooth) * scaled / scaling.factor + smooth * scaled, scaled)


def rope_tables(positions: jax.Array, head_dim: int, theta: float,
                scaling: RopeScaling | None = None) -> tuple[jax.Array, jax.Array]:
    """``cos, sin: float32 [B, L, Dh]`` for integer ``positions: [B, L]``."""
    if positions.ndim != 2:
        raise ValueError(f"positions must be [B, L], got shape {positions.shape}")
    seq_len = jnp.max(positions) + 1 if scaling is not None and scaling.kind == "dynamic" else None
    inv = inverse_frequencies(head_dim, theta, scaling, seq_len)
    angles = positions.astype(jnp.float32)[..., None] * inv  # [B, L, Dh/2]
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate ``x: [B, L, H, Dh]`` with ``cos, sin: [B, L, Dh]`` (computed in float32)."""
    x32 = x.astype(jnp.float32)
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x32[..., half:], x32[..., :half]], axis=-1)
    return (x32 * cos[:, :, None] + rotated * sin[:, :, None]).astype(x.dtype)
