"""SliME's perceiver resampler (Qwen-VL style), spec/methods.md §6.3 and §6.4 step 1.

``g²`` learnable queries cross-attend once to the vision tokens of a view:

    out = ln_post(MHA(ln_q(Q) + pos_q, ln_kv(x) + pos_k, ln_kv(x)))

``pos_q`` is a fixed 2-D sin-cos table on the ``g × g`` query grid; ``pos_k`` is that table bicubic-
interpolated (PyTorch ``F.interpolate(mode="bicubic", align_corners=False)``) onto the key grid; the values
carry no position. There is no key projection (``kv_dim == embed_dim``) and no output projection. The MHA is
``torch.nn.MultiheadAttention`` (:class:`vlm_jax.nn.multi_head.MultiHeadAttention` here): q/k/v in-projections
with biases, an out-projection with bias. The position tables are constants computed on the host (numpy), not
parameters.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vlm_jax.hires.slime.config import ResamplerConfig
from vlm_jax.nn.axis_names import ADAPTER_AXES
from vlm_jax.nn.layers import LayerNorm
from vlm_jax.nn.multi_head import AttentionSpec, MultiHeadAttention
from vlm_jax.nn.posemb import bicubic_matrix
from vlm_jax.nn.precision import FLOAT32, Dtypes


def sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """``[M]`` positions → ``[M, dim]``: ``sin(p·ω)`` then ``cos(p·ω)``, ``ω_i = 10000^(-i/(dim/2))``.

    Computed in float32 as the reference code does.
    """
    omega = np.arange(dim // 2, dtype=np.float32) / np.float32(dim / 2)
    omega = np.float32(1.0) / np.float32(10000.0) ** omega
    angles = positions.reshape(-1).astype(np.float32)[:, None] * omega[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_2d(dim: int, grid: int) -> np.ndarray:
    """Fixed 2-D table ``[grid², dim]`` in row-major (row, col) order.

    [code] The first ``dim/2`` channels encode the *column* index and the last ``dim/2`` the row index
    (the reference builds ``np.meshgrid(w, h)``, "w goes first").
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos position embedding needs dim % 4 == 0, got {dim}")
    rows, cols = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    return np.concatenate([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], axis=1)


@functools.lru_cache(maxsize=32)
def position_tables(dim: int, grid: int, key_hw: tuple[int, int], fp16: bool) -> tuple[np.ndarray, np.ndarray]:
    """Query table ``[grid², dim]`` and key table ``[h·w, dim]`` (float32 arrays).

    With ``fp16`` [code] the stored table is float16, and the key table is interpolated from it in float32
    and cast back to float16.
    """
    table = sincos_2d(dim, grid)
    if fp16:
        table = table.astype(np.float16).astype(np.float32)
    h, w = key_hw
    keys = np.einsum("hi,wj,ijd->hwd", bicubic_matrix(grid, h), bicubic_matrix(grid, w),
                     table.reshape(grid, grid, dim).astype(np.float64)).astype(np.float32)
    if fp16:
        keys = keys.astype(np.float16).astype(np.float32)
    return table, keys.reshape(h * w, dim)


def torch_trunc_normal(stddev: float):
    """``torch.nn.init.trunc_normal_(std=stddev)``: normal truncated at the *absolute* bounds ±2."""

    def init(key, shape, dtype=jnp.float32):
        return (jax.random.truncated_normal(key, -2.0 / stddev, 2.0 / stddev, shape) * stddev).astype(dtype)

    return init


# torch MHA: xavier-uniform on the fused [3E, E] in-projection, i.e. bound sqrt(6 / 4E) per [E, E] block,
# which is variance scaling 0.5 with fan_avg on each block. out_proj keeps nn.Linear's U(±1/sqrt(E)).
# (``vlm_jax.nn.einsum`` applies both to the [E, E] view of the [E, H, Dh] / [H, Dh, E] kernels.)
IN_PROJ_INIT = nnx.initializers.variance_scaling(0.5, "fan_avg", "uniform")
OUT_PROJ_INIT = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class Resampler(nnx.Module):
    """One-layer perceiver resampler: ``x [..., P, D]`` on a ``grid_hw`` key grid → ``[..., g², D]``."""

    def __init__(self, cfg: ResamplerConfig, dim: int, *, dtypes: Dtypes = FLOAT32, rngs: nnx.Rngs):
        if dim % cfg.num_heads:
            raise ValueError(f"Resampler: dim {dim} not divisible by num_heads {cfg.num_heads}")
        self.cfg, self.dim, self.dtype = cfg, dim, dtypes.compute_dtype
        n_queries = cfg.grid * cfg.grid
        self.query = nnx.Param(torch_trunc_normal(0.02)(rngs.params(), (n_queries, dim), dtypes.param_dtype),
                               out_sharding=("queries", "adapter_embed"))
        # g² × P cross-attention without a mask: the XLA path is right on every backend.
        spec = AttentionSpec(dim=dim, heads=cfg.num_heads, axes=ADAPTER_AXES, implementation="xla")
        self.attn = MultiHeadAttention(spec, kernel_init=IN_PROJ_INIT, out_kernel_init=OUT_PROJ_INIT, dtypes=dtypes,
                                       rngs=rngs)
        norm = dict(eps=cfg.norm_eps, dtypes=dtypes)
        self.ln_q, self.ln_kv, self.ln_post = LayerNorm(dim, **norm), LayerNorm(dim, **norm), LayerNorm(dim, **norm)

    @property
    def num_queries(self) -> int:
        return self.cfg.grid * self.cfg.grid

    def __call__(self, x: jax.Array, grid_hw: tuple[int, int]) -> jax.Array:
        """``x: [..., P, D]`` with ``P = h·w`` (row-major key grid ``grid_hw = (h, w)``) → ``[..., g², D]``."""
        *lead, p, d = x.shape
        h, w = grid_hw
        if p != h * w or d != self.dim:
            raise ValueError(f"Resampler: got tokens [..., {p}, {d}], expected [..., {h}·{w}, {self.dim}]")
        pos_q, pos_k = position_tables(self.dim, self.cfg.grid, (h, w), self.cfg.pos_fp16)
        kv = self.ln_kv(x.reshape(-1, p, d))
        queries = self.ln_q(self.query[...]) + jnp.asarray(pos_q, self.dtype)
        q = self.attn.queries(queries[None])
        q = jnp.broadcast_to(q, (kv.shape[0], *q.shape[1:]))
        k = self.attn.keys(kv + jnp.asarray(pos_k, self.dtype))
        out = self.ln_post(self.attn.attend(q, k, self.attn.values(kv)))
        return out.reshape(*lead, self.num_queries, d)
