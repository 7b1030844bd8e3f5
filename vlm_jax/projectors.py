"""Vision→LLM projectors: LLaVA ``mlp2x_gelu`` and InternVL's pixel shuffle + LayerNorm + MLP.

Both map per-tile vision features ``[B, N, P, Dv]`` to LLM-space tokens ``[B, N, P', D]`` in ``dtypes.compute_dtype``.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from vlm_jax.nn.einsum import Dense
from vlm_jax.nn.layers import LayerNorm, activation
from vlm_jax.nn.precision import FLOAT32, Dtypes


@dataclasses.dataclass(frozen=True)
class ProjectorConfig:
    """``kind``: ``"mlp2x_gelu"`` (LLaVA) or ``"internvl"`` (pixel shuffle ``downsample`` + LN + MLP)."""

    kind: str = "mlp2x_gelu"
    act: str = "gelu"
    downsample: float = 0.5  # internvl only: pixel-shuffle ratio (0.5 → 4× fewer tokens)
    norm_eps: float = 1e-5


def pixel_shuffle(x: jax.Array, ratio: float = 0.5) -> jax.Array:
    """InternVL pixel shuffle (space-to-depth, "v2" ordering), spec/methods.md §2.1.

    ``x: [..., h, w, C]`` → ``[..., h·r, w·r, C/r²]`` for ``r = ratio``; identical to HF
    ``InternVLModel.pixel_shuffle`` (tested), whose channel order the released projectors expect.
    """
    *lead, h, w, c = x.shape
    s = round(1 / ratio)
    if h % s or w % s or not math.isclose(1 / s, ratio):
        raise ValueError(f"pixel_shuffle: map {h}x{w} not divisible by 1/ratio = {1 / ratio}")
    # HF views the [h, w] map as (width, height) = (h, w) and merges s neighbours along the second
    # axis first, then along the first; the two permutes leave rows/cols in their original roles.
    x = x.reshape(*lead, h, w // s, c * s)
    x = jnp.swapaxes(x, -3, -2)  # [..., w/s, h, c·s]
    x = x.reshape(*lead, w // s, h // s, c * s * s)
    return jnp.swapaxes(x, -3, -2)  # [..., h/s, w/s, c·s²]


class MLPProjector(nnx.Module):
    """LLaVA ``mlp2x_gelu``: ``Linear(Dv, D) → GELU → Linear(D, D)``."""

    def __init__(self, in_dim: int, out_dim: int, cfg: ProjectorConfig, *, dtypes: Dtypes = FLOAT32, rngs: nnx.Rngs):
        kw = dict(dtypes=dtypes, rngs=rngs)
        self.linear_1 = Dense(in_dim, out_dim, axes=("adapter_embed", "adapter_mlp"), **kw)
        self.linear_2 = Dense(out_dim, out_dim, axes=("adapter_mlp", "embed"), **kw)
        self.act = activation(cfg.act)

    def __call__(self, x: jax.Array, grid_hw: tuple[int, int] | None = None) -> jax.Array:
        """``x: [..., P, Dv]`` → ``[..., P, D]`` (``grid_hw`` unused; same call as InternVLProjector)."""
        return self.linear_2(self.act(self.linear_1(x)))

    @staticmethod
    def tokens_per_tile(patches: int) -> int:
        return patches


class InternVLProjector(nnx.Module):
    """InternVL ``mlp1``: pixel shuffle → ``LayerNorm(Dv/r²) → Linear → GELU → Linear``."""

    def __init__(self, in_dim: int, out_dim: int, cfg: ProjectorConfig, *, dtypes: Dtypes = FLOAT32, rngs: nnx.Rngs):
        kw = dict(dtypes=dtypes, rngs=rngs)
        self.ratio = cfg.downsample
        wide = int(round(in_dim / cfg.downsample ** 2))
        self.layer_norm = LayerNorm(wide, eps=cfg.norm_eps, dtypes=dtypes)
        self.linear_1 = Dense(wide, out_dim, axes=("adapter_embed", "adapter_mlp"), **kw)
        self.linear_2 = Dense(out_dim, out_dim, axes=("adapter_mlp", "embed"), **kw)
        self.act = activation(cfg.act)

    def __call__(self, x: jax.Array, grid_hw: tuple[int, int]) -> jax.Array:
        """``x: [..., P, Dv]`` with ``P = h·w`` → ``[..., P·r², D]``."""
        *lead, p, c = x.shape
        x = pixel_shuffle(x.reshape(*lead, *grid_hw, c), self.ratio)
        x = x.reshape(*lead, -1, x.shape[-1])
        return self.linear_2(self.act(self.linear_1(self.layer_norm(x))))

    def tokens_per_tile(self, patches: int) -> int:
        return int(round(patches * self.ratio ** 2))


def build_projector(cfg: ProjectorConfig, in_dim: int, out_dim: int, *, dtypes: Dtypes = FLOAT32,
                    rngs: nnx.Rngs) -> nnx.Module:
    """The projector of ``cfg.kind`` from ``in_dim`` (ViT width) to ``out_dim`` (LLM width)."""
    kinds = {"mlp2x_gelu": MLPProjector, "internvl": InternVLProjector}
    if cfg.kind not in kinds:
        raise ValueError(f"unknown projector kind {cfg.kind!r}; known: {sorted(kinds)}")
    return kinds[cfg.kind](in_dim, out_dim, cfg, dtypes=dtypes, rngs=rngs)
