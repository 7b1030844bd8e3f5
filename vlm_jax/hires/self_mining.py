"""HiRes-LLaVA Self-Mining Sampler (SMS): per-slice token compression with queries pooled from the
slice itself (spec/methods.md §4.1, §4.2 [inferred] concrete form).

For every view, ``X [h, w, D]`` (ViT patch features, before the projector) becomes
``(h/r)·(w/r)`` tokens that keep the 2-D raster layout::

    Q0 = AvgPool_{r×r}(X)                                   [h/r, w/r, D]
    per layer (``depth`` layers, each its own parameters):
      Q ← Q + MHA(LN_q(Q), LN_kv(X_win), LN_kv(X_win))      query (i, j) sees only its window
      Q ← Q + MLP(LN(Q))

The window of query ``(i, j)`` is its own ``r × r`` block (rows ``i·r … i·r+r-1``, columns likewise),
or with ``window = k > r`` the ``k × k`` neighbourhood centred on that block (``(k - r)/2`` extra
tokens per side, ``k - r`` even); neighbours outside the slice are masked out as keys. Windows are
cut with reshapes (``k = r``) or one gather with static indices (``k > r``), never Python loops over
windows; keys/values are projected once on the whole map before windowing. No position code is
added inside a window ([inferred]: the ViT features carry position already). Views are independent,
so padded views never influence valid ones.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vlm_jax.config_util import check_keys
from vlm_jax.hires.adapter_blocks import block_config
from vlm_jax.hires.dual_perspective_ops import average_pool
from vlm_jax.nn.attention import AttentionMask, dot_product_attention
from vlm_jax.vision.blocks import MLP, HeadsMerge, HeadsProjection, make_norm
from vlm_jax.vision.config import ViTConfig


@dataclasses.dataclass(frozen=True)
class SelfMiningConfig:
    """Self-Mining Sampler settings (spec/methods.md §4.2; all values [inferred]).

    Attributes:
      ratio: pooling factor ``r`` (24×24 → 12×12 = 144 tokens for ``r = 2``).
      window: key neighbourhood side ``k >= r`` with ``k - r`` even; None means ``k = r``.
      depth: number of cross-attention + MLP layers.
      heads, mlp_ratio, act: attention heads (divide the width) and MLP width / activation.
      norm_eps, dtype, param_dtype, attention_impl: as in ``ViTConfig`` (one query per window: "xla").
    """

    ratio: int = 2
    window: int | None = None
    depth: int = 1
    heads: int = 8
    mlp_ratio: int = 4
    act: str = "gelu"
    norm_eps: float = 1e-5
    dtype: str = "float32"
    param_dtype: str = "float32"
    attention_impl: str = "xla"

    def __post_init__(self):
        for name in ("ratio", "depth", "heads", "mlp_ratio"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"SelfMiningConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        k = self.window_size
        if not isinstance(k, int) or k < self.ratio or (k - self.ratio) % 2:
            raise ValueError(f"SelfMiningConfig.window must be an int >= ratio={self.ratio} with an even "
                             f"difference, got {self.window!r}")

    @property
    def window_size(self) -> int:
        return self.ratio if self.window is None else self.window

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SelfMiningConfig":
        """Build from a mapping; unknown keys raise."""
        d = check_keys(cls, d, "SelfMiningConfig")
        return cls(**dict(d))


def _window_index(size: int, ratio: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Along one axis: indices into the ``(window - ratio)/2``-padded axis ``[size/ratio, window]`` and
    whether each falls inside the unpadded axis."""
    pad = (window - ratio) // 2
    idx = np.arange(size // ratio)[:, None] * ratio + np.arange(window)[None, :]
    return idx, (idx >= pad) & (idx < size + pad)


def window_valid(h: int, w: int, ratio: int, window: int) -> np.ndarray:
    """``bool [h/r, w/r, k·k]``: window positions inside the ``h × w`` slice."""
    rows = _window_index(h, ratio, window)[1]
    cols = _window_index(w, ratio, window)[1]
    return (rows[:, None, :, None] & cols[None, :, None, :]).reshape(h // ratio, w // ratio, window * window)


def window_tokens(x: jax.Array, ratio: int, window: int) -> jax.Array:
    """``x [M, h, w, C]`` → ``[M, h/r, w/r, k·k, C]``: the (row-major) ``k × k`` window of each query,
    zero outside the slice (see :func:`window_valid`)."""
    m, h, w, c = x.shape
    if h % ratio or w % ratio:
        raise ValueError(f"slice grid {h}x{w} is not divisible by the pooling ratio {ratio}")
    if window == ratio:
        blocks = x.reshape(m, h // ratio, ratio, w // ratio, ratio, c).transpose(0, 1, 3, 2, 4, 5)
        return blocks.reshape(m, h // ratio, w // ratio, ratio * ratio, c)
    pad = (window - ratio) // 2
    padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    rows = _window_index(h, ratio, window)[0]
    cols = _window_index(w, ratio, window)[0]
    out = padded[:, rows[:, None, :, None], cols[None, :, None, :]]  # [M, h/r, w/r, k, k, C]
    return out.reshape(m, h // ratio, w // ratio, window * window, c)


class SelfMiningLayer(nnx.Module):
    """One windowed cross-attention + MLP layer: ``Q [M, h/r, w/r, D], X [M, h, w, D] → Q'``."""

    def __init__(self, bcfg: ViTConfig, *, rngs: nnx.Rngs):
        self.q_norm = make_norm(bcfg, "layer")
        self.kv_norm = make_norm(bcfg, "layer")
        self.q = HeadsProjection(bcfg, use_bias=True, rngs=rngs)
        self.k = HeadsProjection(bcfg, use_bias=True, rngs=rngs)
        self.v = HeadsProjection(bcfg, use_bias=True, rngs=rngs)
        self.out = HeadsMerge(bcfg, rngs=rngs)
        self.mlp_norm = make_norm(bcfg, "layer")
        self.mlp = MLP(bcfg, rngs=rngs)
        self.heads, self.head_dim, self.implementation = bcfg.heads, bcfg.head_dim, bcfg.attention_impl

    def __call__(self, q: jax.Array, x: jax.Array, ratio: int, window: int) -> jax.Array:
        m, nh, nw, d = q.shape
        _, h, w, _ = x.shape
        nq, kk = nh * nw, window * window
        xn = self.kv_norm(x).reshape(m, h * w, d)

        def windowed(proj: HeadsProjection) -> jax.Array:
            y = proj(xn).reshape(m, h, w, self.heads * self.head_dim)
            return window_tokens(y, ratio, window).reshape(m * nq, kk, self.heads, self.head_dim)

        queries = self.q(self.q_norm(q).reshape(m * nq, 1, d))
        valid = jnp.broadcast_to(jnp.asarray(window_valid(h, w, ratio, window)).reshape(1, nq, kk), (m, nq, kk))
        mask = AttentionMask(jnp.zeros((m * nq, 1), jnp.int32), jnp.zeros((m * nq, kk), jnp.int32),
                             valid.reshape(m * nq, kk), causal=False)
        att = dot_product_attention(queries, windowed(self.k), windowed(self.v), mask,
                                    implementation=self.implementation)
        q = q + self.out(att).reshape(m, nh, nw, d)
        return q + self.mlp(self.mlp_norm(q))


class SelfMiningSampler(nnx.Module):
    """``sms(x [..., h·w, D], (h, w)) → [..., (h/r)·(w/r), D]`` (raster order of the pooled grid)."""

    def __init__(self, cfg: SelfMiningConfig, dim: int, *, rngs: nnx.Rngs):
        bcfg = block_config(dim, heads=cfg.heads, mlp=cfg.mlp_ratio * dim, act=cfg.act, norm_eps=cfg.norm_eps,
                            dtype=cfg.dtype, param_dtype=cfg.param_dtype, attention_impl=cfg.attention_impl)
        self.layers = nnx.List([SelfMiningLayer(bcfg, rngs=rngs) for _ in range(cfg.depth)])
        self.ratio, self.window = cfg.ratio, cfg.window_size

    def tokens_per_slice(self, h: int, w: int) -> int:
        """Output tokens of one ``h × w`` view: ``(h/r)·(w/r)``."""
        if h % self.ratio or w % self.ratio:
            raise ValueError(f"slice grid {h}x{w} is not divisible by the pooling ratio {self.ratio}")
        return (h // self.ratio) * (w // self.ratio)

    def __call__(self, x: jax.Array, grid_hw: tuple[int, int]) -> jax.Array:
        *lead, p, d = x.shape
        h, w = grid_hw
        if p != h * w:
            raise ValueError(f"SelfMiningSampler: {p} tokens per view do not form the {h}x{w} grid")
        n_out = self.tokens_per_slice(h, w)
        x = x.reshape(math.prod(lead), h, w, d)
        q = average_pool(x, (h // self.ratio, w // self.ratio))
        for layer in self.layers:
            q = layer(q, x, self.ratio, self.window)
        return q.reshape(*lead, n_out, d)
