"""INF-LLaVA Dual-perspective Enhancement Module (DEM), spec/methods.md §5.1 [paper], §5.2 [code].

Input: the ViT patch features of the DCM views (tiling kind ``"dual"``, :func:`vlm_jax.tiling.plan_dual`)
``[B, 2·n_rows·n_cols + 1, P, D]``; output: one enhanced view ``[B, P, D]`` for the projector.

Default = the official code (``SpatialEmbed`` + ``encode_images``, checkpoint parity):

1. recombine: ``F_loc`` = contiguous crops tiled, ``F_glo`` = strided crops interleaved (§5.1 DCM);
2. global as query: both maps split into *contiguous* windows, ``G = MHA(q=F_glo_k, kv=F_loc_k)``;
3. local as query: both maps split into *strided* sub-maps, ``L = MHA(q=F_loc_k, kv=F_glo_k)``;
   one MHA shared by both directions: q/k/v/out ``Linear(D, D)`` with bias, post-LN residual on
   the query input ``LN(out(attn) + q)``;
4. fuse: ``Y = LN(concat(ffn_crop(L), ffn_stride(G)) + G + L)``, ``ffn = Linear(D, D/16) → GELU →
   Linear(D/16, D/2)``;
5. down-sample ``Y`` bilinearly (align_corners=False, no antialias) to ``h x w``;
6. merge with the low-res view by the mean ``(low + dem) / 2``.

Paper variants (flags of :class:`DEMConfig`, all set by :meth:`DEMConfig.paper`): ``window_pairing=
"paper"`` (global query in strided windows, local query in contiguous windows), ``shared_attention=
False``, ``attention_residual_norm=False`` and ``attention_out_proj=False`` (the paper's
``softmax(QKᵀ/√d)·V``), ``fusion="linear"`` (``concat(V_loc W_loc, V_glo W_glo)``, ``W: D → D/2``;
[inferred] with bias, and in the code's channel order — the paper writes ``glo`` first, an equivalent
permutation of learned weights), ``downsample="avg_pool"``, ``lowres_merge="sum"``.

Every window of every example goes through one batched attention call per direction
(``[B·n_rows·n_cols, h·w, D]``); grids with ``n_rows != n_cols`` are supported (the code is square-only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from vlm_jax.config_util import check_keys
from vlm_jax.hires.dual_perspective_ops import (
    average_pool,
    bilinear_resize,
    merge_windows,
    recombine_views,
    split_windows,
)
from vlm_jax.nn.attention import IMPLEMENTATIONS
from vlm_jax.nn.axis_names import ADAPTER_AXES
from vlm_jax.nn.einsum import Dense
from vlm_jax.nn.layers import LayerNorm, activation
from vlm_jax.nn.mlp import MLP
from vlm_jax.nn.multi_head import AttentionSpec, MultiHeadAttention
from vlm_jax.nn.precision import FLOAT32, Dtypes
from vlm_jax.sharding import constrain

# (window kind for the global-query direction, window kind for the local-query direction)
WINDOW_PAIRINGS = {"code": ("contiguous", "strided"), "paper": ("strided", "contiguous")}
FUSIONS = ("ffn", "linear")
DOWNSAMPLES = ("bilinear", "avg_pool")
LOWRES_MERGES = ("mean", "sum")


@dataclasses.dataclass(frozen=True)
class DEMConfig:
    """DEM options; defaults reproduce the official code (§5.2), :meth:`paper` gives §5.1.

    Attributes:
      heads: attention heads (code: 8 at D = 1024).
      window_pairing: ``"code"`` (global query ↔ contiguous windows, local query ↔ strided) or
        ``"paper"`` (swapped).
      shared_attention: one attention module for both directions (code) or one each.
      attention_out_proj: output projection after the heads (code) or none (paper formula).
      attention_residual_norm: ``LN(attn + query_input)`` (code) or the plain attention output.
      fusion: ``"ffn"`` (code: bottleneck FFNs + residual sum + LN) or ``"linear"`` (paper: two
        ``D → D/2`` maps + concat).
      ffn_ratio: FFN bottleneck ``D / ffn_ratio`` (code: 16).
      downsample: ``"bilinear"`` (code) or ``"avg_pool"`` (paper) from ``(n_rows·h, n_cols·w)`` to ``(h, w)``.
      lowres_merge: ``"mean"`` (code) or ``"sum"`` (paper) with the low-res view.
      act: FFN activation (torch ``nn.GELU``: exact erf).
      norm_eps: LayerNorm epsilon (torch default).
      attention_impl: :func:`vlm_jax.nn.attention.dot_product_attention` implementation.
    """

    heads: int = 8
    window_pairing: str = "code"
    shared_attention: bool = True
    attention_out_proj: bool = True
    attention_residual_norm: bool = True
    fusion: str = "ffn"
    ffn_ratio: int = 16
    downsample: str = "bilinear"
    lowres_merge: str = "mean"
    act: str = "gelu"
    norm_eps: float = 1e-5
    attention_impl: str = "auto"

    def __post_init__(self):
        for name, value, known in (("window_pairing", self.window_pairing, tuple(WINDOW_PAIRINGS)),
                                   ("fusion", self.fusion, FUSIONS), ("downsample", self.downsample, DOWNSAMPLES),
                                   ("lowres_merge", self.lowres_merge, LOWRES_MERGES)):
            if value not in known:
                raise ValueError(f"DEMConfig.{name}={value!r}; known: {known}")
        if self.heads < 1 or self.ffn_ratio < 1:
            raise ValueError(f"DEMConfig.heads and ffn_ratio must be >= 1, got {self.heads}, {self.ffn_ratio}")
        activation(self.act)
        if self.attention_impl not in IMPLEMENTATIONS:
            raise ValueError(f"DEMConfig.attention_impl={self.attention_impl!r} not in {IMPLEMENTATIONS}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DEMConfig:
        """Build from a mapping; unknown keys raise."""
        d = check_keys(cls, d, "DEMConfig")
        return cls(**dict(d))

    @classmethod
    def paper(cls, **overrides) -> DEMConfig:
        """Every §5.1 paper choice; single-head ``softmax(QKᵀ/√d)V`` as the paper writes it."""
        return cls.from_dict(dict(heads=1, window_pairing="paper", shared_attention=False, attention_out_proj=False,
                                  attention_residual_norm=False, fusion="linear", downsample="avg_pool",
                                  lowres_merge="sum") | dict(overrides))


class WindowCrossAttention(nnx.Module):
    """Cross-attention inside windows: ``query [Bw, T, D]``, ``context [Bw, S, D]`` → ``[Bw, T, D]``.

    Code (``MultiHeadedAttention(h, D)``): ``LN(out(MHA(q(query), k(context), v(context))) + query)``,
    q/k/v/out ``Linear(D, D)`` with biases, scale ``1/√(D/h)``; the out projection and the residual LN are
    optional (paper variant).
    """

    def __init__(self, cfg: DEMConfig, dim: int, *, dtypes: Dtypes, rngs: nnx.Rngs):
        spec = AttentionSpec(dim=dim, heads=cfg.heads, out_proj=cfg.attention_out_proj, axes=ADAPTER_AXES,
                             implementation=cfg.attention_impl)
        self.attn = MultiHeadAttention(spec, dtypes=dtypes, rngs=rngs)
        self.norm = LayerNorm(dim, eps=cfg.norm_eps, dtypes=dtypes) if cfg.attention_residual_norm else None

    def __call__(self, query: jax.Array, context: jax.Array) -> jax.Array:
        y = self.attn(query, context)
        if self.norm is not None:
            y = self.norm(y + query.astype(y.dtype))
        return y


class DualPerspectiveEnhancement(nnx.Module):
    """DEM (see module docstring). ``dim`` = ViT width ``D`` (1024 for CLIP-L/14-336: ≈ 4.40M params).

    Runs in ``dtypes.compute_dtype``; the code's fusion FFNs are ``Linear(D, D/r) → act → Linear(D/r, D/2)``.
    """

    def __init__(self, cfg: DEMConfig, dim: int, *, dtypes: Dtypes = FLOAT32, rngs: nnx.Rngs):
        if dim % 2 or dim % cfg.ffn_ratio or dim % cfg.heads:
            raise ValueError(f"DEM width {dim} must be divisible by 2 (two D/2 fusion halves), by "
                             f"ffn_ratio={cfg.ffn_ratio} and by heads={cfg.heads}")
        kw = dict(dtypes=dtypes, rngs=rngs)
        self.cfg = cfg
        self.dim = dim
        # code: the one shared module; paper: the global-query direction's module.
        self.attention = WindowCrossAttention(cfg, dim, **kw)
        self.local_attention = None if cfg.shared_attention else WindowCrossAttention(cfg, dim, **kw)
        if cfg.fusion == "ffn":
            ffn = dict(out_dim=dim // 2, act=cfg.act, axes=ADAPTER_AXES, **kw)
            self.fuse_local = MLP(dim, dim // cfg.ffn_ratio, **ffn)  # code ffn_crop (on L)
            self.fuse_global = MLP(dim, dim // cfg.ffn_ratio, **ffn)  # code ffn_stride (on G)
            self.fuse_norm = LayerNorm(dim, eps=cfg.norm_eps, dtypes=dtypes)
        else:
            self.fuse_local = Dense(dim, dim // 2, axes=("adapter_embed", "adapter_mlp"), **kw)  # W_loc
            self.fuse_global = Dense(dim, dim // 2, axes=("adapter_embed", "adapter_mlp"), **kw)  # W_glo
            self.fuse_norm = None
        self.dtype = dtypes.compute_dtype

    def _enhance(self, attention: WindowCrossAttention, query_map: jax.Array, context_map: jax.Array, kind: str,
                 n_rows: int, n_cols: int, grid_hw: tuple[int, int]) -> jax.Array:
        """One direction: maps ``[B, H, W, D]`` → windows ``[B·n, h·w, D]`` → attention → ``[B, H, W, D]``."""
        names = ("act_batch", None, "act_embed")
        q = constrain(split_windows(query_map, kind, n_rows, n_cols), names)
        kv = constrain(split_windows(context_map, kind, n_rows, n_cols), names)
        return merge_windows(attention(q, kv), kind, n_rows, n_cols, grid_hw)

    def enhanced_map(self, views: jax.Array, *, grid_hw: tuple[int, int], n_rows: int, n_cols: int) -> jax.Array:
        """Steps 1-4: ``views [B, 2n+1, P, D]`` → fused high-res map ``[B, n_rows·h, n_cols·w, D]``."""
        if views.shape[-1] != self.dim:
            raise ValueError(f"DEM built for width {self.dim}, got views {views.shape}")
        f_loc, f_glo, _ = recombine_views(views.astype(self.dtype), grid_hw, n_rows, n_cols)
        f_loc = constrain(f_loc, ("act_batch", None, None, "act_embed"))
        f_glo = constrain(f_glo, ("act_batch", None, None, "act_embed"))
        global_kind, local_kind = WINDOW_PAIRINGS[self.cfg.window_pairing]
        g_enh = self._enhance(self.attention, f_glo, f_loc, global_kind, n_rows, n_cols, grid_hw)
        local_attention = self.attention if self.local_attention is None else self.local_attention
        l_enh = self._enhance(local_attention, f_loc, f_glo, local_kind, n_rows, n_cols, grid_hw)
        fused = jnp.concatenate([self.fuse_local(l_enh), self.fuse_global(g_enh)], axis=-1)
        if self.fuse_norm is not None:
            fused = self.fuse_norm(fused + g_enh + l_enh)
        return fused

    def __call__(self, views: jax.Array, *, grid_hw: tuple[int, int], n_rows: int, n_cols: int) -> jax.Array:
        """``views [B, 2·n_rows·n_cols + 1, P, D]`` (DCM order, ``P = h·w``) → ``[B, P, D]``."""
        h, w = grid_hw
        fused = self.enhanced_map(views, grid_hw=grid_hw, n_rows=n_rows, n_cols=n_cols)
        down = bilinear_resize if self.cfg.downsample == "bilinear" else average_pool
        dem = down(fused, (h, w)).reshape(views.shape[0], h * w, self.dim)
        low = views[:, -1].astype(dem.dtype)
        return (low + dem) / 2 if self.cfg.lowres_merge == "mean" else low + dem
