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
from vlm_jax.hires.dual_perspective_ops import average_pool
from vlm_jax.nn.attention import IMPLEMENTATIONS, full_mask
from vlm_jax.nn.axis_names import VIT_AXES
from vlm_jax.nn.layers import ACTIVATIONS, LayerNorm
from vlm_jax.nn.mlp import MLP
from vlm_jax.nn.multi_head import AttentionSpec, MultiHeadAttention
from vlm_jax.nn.precision import FLOAT32, Dtypes, refuse_dtype_keys


@dataclasses.dataclass(frozen=True)
class SelfMiningConfig:
    """Self-Mining Sampler settings (spec/methods.md §4.2; all values [inferred]).

    Attributes:
      ratio: pooling factor ``r`` (24×24 → 12×12 = 144 tokens for ``r = 2``).
      window: key neighbourhood side ``k >= r`` with ``k - r`` even; None means ``k = r``.
      depth: number of cross-attention + MLP layers.
      heads, mlp_ratio, act: attention heads (divide the width) and MLP width / activation.
      norm_eps: LayerNorm epsilon.
      attention_impl: ``vlm_jax.nn.attention.dot_product_attention`` implementation (one query per window: "xla").
    """

    ratio: int = 2
    window: int | None = None
    depth: int = 1
    heads: int = 8
    mlp_ratio: int = 4
    act: str = "gelu"
    norm_eps: float = 1e-5
    attention_impl: str = "xla"

    def __post_init__(self):
        for name in ("ratio", "depth", "heads", "mlp_ratio"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"SelfMiningConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        k = self.window_size
        if not isinstance(k, int) or k < self.ratio or (k - self.ratio) % 2:
            raise ValueError(f"SelfMiningConfig.window must be an int >= ratio={self.ratio} with an even "
                             f"difference, got {self.window!r}")
        if self.act not in ACTIVATIONS:
            raise ValueError(f"SelfMiningConfig.act={self.act!r} not in {sorted(ACTIVATIONS)}")
        if self.attention_impl not in IMPLEMENTATIONS:
            raise ValueError(f"SelfMiningConfig.attention_impl={self.attention_impl!r} not in {IMPLEMENTATIONS}")

    @property
    def window_size(self) -> int:
        return self.ratio if self.window is None else self.window

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SelfMiningConfig:
        """Build from a mapping; unknown keys raise."""
        refuse_dtype_keys(d, "SelfMiningConfig")
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

    def __init__(self, cfg: SelfMiningConfig, dim: int, *, dtypes: Dtypes, rngs: nnx.Rngs):
        norm = dict(eps=cfg.norm_eps, dtypes=dtypes)
        self.q_norm, self.kv_norm = LayerNorm(dim, **norm), LayerNorm(dim, **norm)
        self.mlp_norm = LayerNorm(dim, **norm)
        spec = AttentionSpec(dim=dim, heads=cfg.heads, axes=VIT_AXES, implementation=cfg.attention_impl)
        self.attn = MultiHeadAttention(spec, dtypes=dtypes, rngs=rngs)
        self.mlp = MLP(dim, cfg.mlp_ratio * dim, act=cfg.act, axes=VIT_AXES, dtypes=dtypes, rngs=rngs)

    def __call__(self, q: jax.Array, x: jax.Array, ratio: int, window: int) -> jax.Array:
        m, nh, nw, d = q.shape
        _, h, w, _ = x.shape
        nq, kk = nh * nw, window * window
        xn = self.kv_norm(x).reshape(m, h * w, d)

        def windowed(heads: jax.Array) -> jax.Array:  # [M, h·w, K, Dh] → [M·nq, k·k, K, Dh]
            y = window_tokens(heads.reshape(m, h, w, -1), ratio, window)
            return y.reshape(m * nq, kk, *heads.shape[2:])

        queries = self.attn.queries(self.q_norm(q).reshape(m * nq, 1, d))
        valid = jnp.broadcast_to(jnp.asarray(window_valid(h, w, ratio, window)).reshape(1, nq, kk), (m, nq, kk))
        mask = full_mask(valid.reshape(m * nq, kk), num_queries=1)
        att = self.attn.attend(queries, windowed(self.attn.keys(xn)), windowed(self.attn.values(xn)), mask)
        q = q + att.reshape(m, nh, nw, d)
        return q + self.mlp(self.mlp_norm(q))


class SelfMiningSampler(nnx.Module):
    """``sms(x [..., h·w, D], (h, w)) → [..., (h/r)·(w/r), D]`` (raster order of the pooled grid, compute dtype)."""

    def __init__(self, cfg: SelfMiningConfig, dim: int, *, dtypes: Dtypes = FLOAT32, rngs: nnx.Rngs):
        if dim % cfg.heads:
            raise ValueError(f"Self-Mining width {dim} is not divisible by heads={cfg.heads}")
        self.layers = nnx.List([SelfMiningLayer(cfg, dim, dtypes=dtypes, rngs=rngs) for _ in range(cfg.depth)])
        self.ratio, self.window = cfg.ratio, cfg.window_size
        self.dtype = dtypes.compute_dtype

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
        x = x.reshape(math.prod(lead), h, w, d).astype(self.dtype)
        q = average_pool(x, (h // self.ratio, w // self.ratio))
        for layer in self.layers:
            q = layer(q, x, self.ratio, self.window)
        return q.reshape(*lead, n_out, d)
