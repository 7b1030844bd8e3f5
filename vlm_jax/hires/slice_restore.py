"""HiRes-LLaVA SliceRestore adapter (SRA): merge → capture → split inside the ViT (spec/methods.md §4.1, §4.2).

After each chosen ViT layer the slices of every image are stitched by grid position into the
whole-image feature map, enhanced by a local and a global fusion branch, and cut back::

    F  = merge_slices(slice patch tokens)                [B, R·h, C·w, D]   (vlm_jax.hires.slice_grid)
    L  = DWConv_{k×k, stride 1, zero padding}(F)         local fusion
    G  = Up_s(MHSA(LN(Down_s(F)) + pos2d))               global fusion on the s-times down-sampled map
    F' = F + γ ⊙ (L + G)                                 γ [D], zero-initialised
    slice tokens ← split_slices(F'); CLS (if any) untouched; other views unchanged

Choices ([inferred] unless marked; the paper's numbers are unknown, §4.4):
- placement: a sequential adapter after ViT layer ``ℓ`` for every ``ℓ`` in ``cfg.layers`` (one
  adapter per layer), through ``ViT.__call__(hooks=...)``.
- local fusion: stride-1 ``local_kernel × local_kernel`` depth-wise conv (reading (b) of §4.1);
  ``local_stride = local_kernel`` gives reading (a): a non-overlapping strided depth-wise conv,
  up-sampled back with ``up_mode``.
- global fusion: ``Down_s`` is a depth-wise conv with kernel = stride = ``down`` (``down_mode="conv"``)
  or ``down × down`` average pooling (``"avg"``); pre-LN multi-head self-attention with a fixed 2-D
  sine-cosine position code (``global_pos``); ``Up_s`` nearest or bilinear (``up_mode``). ``G`` is the
  attention output alone (the residual is ``F`` in the fusion).
- fusion: sum of both branches scaled by the zero-initialised ``γ``, so at initialisation the ViT is
  exactly unchanged.
- masking: positions outside an example's grid are zero before the fusion (the depth-wise conv
  zero-pads at the real image border, never at slice borders), are masked out as attention keys,
  never contribute to the bilinear up-sampling (weights renormalised over real cells), and get no
  update. Views that are not merged slices (global view, thumbnail, padding) pass unchanged.
  Requires slice sides divisible by ``down`` (and by ``local_stride``) so down-sampled cells never
  straddle the image border.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vlm_jax.config_util import check_keys
from vlm_jax.hires.dual_perspective_ops import average_pool, bilinear_resize
from vlm_jax.hires.slice_grid import canvas_mask, merge_slices, split_slices
from vlm_jax.nn.attention import IMPLEMENTATIONS, full_mask
from vlm_jax.nn.axis_names import VIT_AXES
from vlm_jax.nn.layers import LayerNorm
from vlm_jax.nn.multi_head import AttentionSpec, MultiHeadAttention
from vlm_jax.nn.precision import FLOAT32, Dtypes, refuse_dtype_keys

DOWN_MODES = ("conv", "avg")
UP_MODES = ("nearest", "bilinear")


@dataclasses.dataclass(frozen=True)
class SliceRestoreConfig:
    """SliceRestore settings (spec/methods.md §4.2; all values [inferred]).

    Attributes:
      layers: 0-based ViT layers after which an adapter runs (each has its own parameters).
      max_rows, max_cols: static canvas capacity in slices (every batch grid must fit).
      heads: attention heads of the global fusion (must divide the ViT width).
      local_kernel, local_stride: depth-wise conv of the local branch; stride 1 (odd kernel, zero
        "same" padding) or stride = kernel (strided reading (a), then up-sampled).
      down, down_mode: global-branch down-sampling factor ``s`` and operator ("conv" | "avg").
      up_mode: "nearest" | "bilinear" (torch ``align_corners=False`` weights).
      global_pos: add a 2-D sine-cosine position code before the global attention (width % 4 == 0).
      norm_eps: LayerNorm epsilon of the global branch.
      attention_impl: ``vlm_jax.nn.attention.dot_product_attention`` implementation of the global branch.
    """

    layers: tuple[int, ...]
    max_rows: int
    max_cols: int
    heads: int = 8
    local_kernel: int = 3
    local_stride: int = 1
    down: int = 2
    down_mode: str = "conv"
    up_mode: str = "bilinear"
    global_pos: bool = True
    norm_eps: float = 1e-5
    attention_impl: str = "auto"

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers or any(not isinstance(i, int) or i < 0 for i in self.layers) \
                or len(set(self.layers)) != len(self.layers):
            raise ValueError(f"SliceRestoreConfig.layers must be distinct non-negative ints, got {self.layers}")
        for name in ("max_rows", "max_cols", "heads", "local_kernel", "local_stride", "down"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"SliceRestoreConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        if self.local_stride == 1 and self.local_kernel % 2 == 0:
            raise ValueError(f"a stride-1 local conv needs an odd kernel, got local_kernel={self.local_kernel}")
        if self.local_stride not in (1, self.local_kernel):
            raise ValueError(f"local_stride must be 1 or local_kernel={self.local_kernel}, got {self.local_stride}")
        if self.down_mode not in DOWN_MODES:
            raise ValueError(f"SliceRestoreConfig.down_mode={self.down_mode!r} not in {DOWN_MODES}")
        if self.up_mode not in UP_MODES:
            raise ValueError(f"SliceRestoreConfig.up_mode={self.up_mode!r} not in {UP_MODES}")
        if self.attention_impl not in IMPLEMENTATIONS:
            raise ValueError(f"SliceRestoreConfig.attention_impl={self.attention_impl!r} not in {IMPLEMENTATIONS}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SliceRestoreConfig:
        """Build from a mapping; unknown keys raise."""
        refuse_dtype_keys(d, "SliceRestoreConfig")
        d = check_keys(cls, d, "SliceRestoreConfig")
        return cls(**dict(d))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SliceContext:
    """Per-batch slice geometry the adapter hooks need.

    Attributes:
      grid: ``int [B, 2]`` (rows, cols) of each example's slice grid.
      tile_mask: ``bool [B, N]`` valid views (padded views last).
      slice_hw: static ``(h, w)`` patch grid of one view (``P = h·w``).
      first_slice: static index of the first grid slice among the views (1: global view first, as
        LLaVA-NeXT / UHD / SliME order; 0: InternVL order, thumbnail last).
    """

    grid: jax.Array
    tile_mask: jax.Array
    slice_hw: tuple[int, int] = dataclasses.field(metadata=dict(static=True))
    first_slice: int = dataclasses.field(metadata=dict(static=True))


def depthwise_conv(x: jax.Array, kernel: jax.Array, bias: jax.Array, *, stride: int) -> jax.Array:
    """Depth-wise 2-D convolution (cross-correlation, as ``torch.nn.Conv2d(groups=D)``).

    ``x [B, H, W, D]``, ``kernel [k, k, D]``, ``bias [D]``. ``stride = 1``: zero "same" padding (odd
    ``k``) → ``[B, H, W, D]``; ``stride > 1``: no padding → ``[B, ⌊(H-k)/s⌋+1, ⌊(W-k)/s⌋+1, D]``.
    """
    d = x.shape[-1]
    y = jax.lax.conv_general_dilated(x, kernel[:, :, None, :].astype(x.dtype), (stride, stride),
                                     "SAME" if stride == 1 else "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=d)
    return y + bias.astype(x.dtype)


def masked_upsample(g: jax.Array, valid: jax.Array, factor: int, mode: str) -> jax.Array:
    """``g [B, h, w, D]`` → ``[B, h·factor, w·factor, D]``; cells with ``valid [B, h, w]`` False never contribute.

    "nearest" repeats cells; "bilinear" uses torch ``align_corners=False`` weights renormalised over the
    valid cells, which for a top-left rectangle of valid cells equals resizing the cropped map.
    Positions inside invalid cells are zero.
    """
    def nearest(a: jax.Array) -> jax.Array:
        return jnp.repeat(jnp.repeat(a, factor, axis=1), factor, axis=2)

    g = jnp.where(valid[..., None], g, jnp.zeros((), g.dtype))
    if mode == "nearest":
        return nearest(g)
    if mode != "bilinear":
        raise ValueError(f"unknown up-sampling mode {mode!r}; known: {UP_MODES}")
    size = (g.shape[1] * factor, g.shape[2] * factor)
    num = bilinear_resize(g.astype(jnp.float32), size)
    den = bilinear_resize(valid[..., None].astype(jnp.float32), size)
    inside = nearest(valid[..., None])
    out = jnp.where(inside, num / jnp.where(inside, den, 1.0), 0.0)
    return out.astype(g.dtype)


def sincos_2d(rows: int, cols: int, dim: int) -> np.ndarray:
    """Fixed 2-D sine-cosine position code ``[rows, cols, dim]`` (first half: row, second: column)."""
    if dim % 4:
        raise ValueError(f"a 2-D sine-cosine position code needs a width divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000.0 ** (np.arange(quarter) / quarter)
    r = np.arange(rows)[:, None] * omega
    c = np.arange(cols)[:, None] * omega
    row_code = np.broadcast_to(np.concatenate([np.sin(r), np.cos(r)], -1)[:, None], (rows, cols, 2 * quarter))
    col_code = np.broadcast_to(np.concatenate([np.sin(c), np.cos(c)], -1)[None], (rows, cols, 2 * quarter))
    return np.concatenate([row_code, col_code], -1).astype(np.float32)


class SliceRestoreBlock(nnx.Module):
    """One layer's fusion on the whole-image canvas: ``F [B, H, W, D], mask [B, H, W] → γ ⊙ (L + G)``.

    The result is the update to add to ``F`` (zero where ``mask`` is False), in the compute dtype; values of
    ``F`` outside ``mask`` are ignored.
    """

    def __init__(self, cfg: SliceRestoreConfig, dim: int, *, dtypes: Dtypes = FLOAT32, rngs: nnx.Rngs):
        if cfg.global_pos and dim % 4:
            raise ValueError(f"global_pos needs a width divisible by 4, got {dim}")
        pdt = dtypes.param_dtype
        dw_init = nnx.initializers.lecun_normal(in_axis=(0, 1), out_axis=2)
        k, s = cfg.local_kernel, cfg.down
        self.local_kernel = nnx.Param(dw_init(rngs.params(), (k, k, dim), pdt), out_sharding=(None, None, "vit_embed"))
        self.local_bias = nnx.Param(jnp.zeros((dim,), pdt), out_sharding=("vit_embed",))
        if cfg.down_mode == "conv":
            self.down_kernel = nnx.Param(dw_init(rngs.params(), (s, s, dim), pdt),
                                         out_sharding=(None, None, "vit_embed"))
            self.down_bias = nnx.Param(jnp.zeros((dim,), pdt), out_sharding=("vit_embed",))
        else:
            self.down_kernel = self.down_bias = None
        self.norm = LayerNorm(dim, eps=cfg.norm_eps, dtypes=dtypes)
        self.attn = MultiHeadAttention(AttentionSpec(dim=dim, heads=cfg.heads, axes=VIT_AXES,
                                                     implementation=cfg.attention_impl), dtypes=dtypes, rngs=rngs)
        self.dtype = dtypes.compute_dtype
        self.gamma = nnx.Param(jnp.zeros((dim,), pdt), out_sharding=("norm",))
        self.local_stride, self.down, self.up_mode, self.global_pos = cfg.local_stride, s, cfg.up_mode, cfg.global_pos

    def local_fusion(self, f: jax.Array, mask: jax.Array) -> jax.Array:
        """``L [B, H, W, D]`` from the zero-filled canvas ``f``."""
        s = self.local_stride
        out = depthwise_conv(f, self.local_kernel[...], self.local_bias[...], stride=s)
        if s == 1:
            return out
        return masked_upsample(out, mask[:, ::s, ::s], s, self.up_mode)

    def global_fusion(self, f: jax.Array, mask: jax.Array) -> jax.Array:
        """``G [B, H, W, D]``: down-sample, pre-LN self-attention over real cells, up-sample."""
        s = self.down
        b, big_h, big_w, d = f.shape
        if big_h % s or big_w % s:
            raise ValueError(f"canvas {big_h}x{big_w} is not divisible by the down-sampling factor {s}")
        if self.down_kernel is not None:
            t = depthwise_conv(f, self.down_kernel[...], self.down_bias[...], stride=s)
        else:
            t = average_pool(f, (big_h // s, big_w // s))
        small_valid = mask[:, ::s, ::s]
        y = self.norm(t)
        if self.global_pos:
            y = y + jnp.asarray(sincos_2d(big_h // s, big_w // s, d), y.dtype)
        g = self.attn(y.reshape(b, -1, d), mask=full_mask(small_valid.reshape(b, -1)))
        return masked_upsample(g.reshape(t.shape), small_valid, s, self.up_mode)

    def __call__(self, f: jax.Array, mask: jax.Array) -> jax.Array:
        keep = mask[..., None]
        f = jnp.where(keep, f.astype(self.dtype), jnp.zeros((), self.dtype))
        fused = self.local_fusion(f, mask) + self.global_fusion(f, mask)
        return jnp.where(keep, self.gamma[...].astype(fused.dtype) * fused, jnp.zeros((), fused.dtype))


class SliceRestoreAdapter(nnx.Module):
    """One :class:`SliceRestoreBlock` per ViT layer in ``cfg.layers``, applied through ViT hooks."""

    def __init__(self, cfg: SliceRestoreConfig, dim: int, *, dtypes: Dtypes = FLOAT32, rngs: nnx.Rngs):
        self.cfg = cfg
        self.blocks = nnx.List([SliceRestoreBlock(cfg, dim, dtypes=dtypes, rngs=rngs) for _ in cfg.layers])

    def restore(self, x: jax.Array, *, ctx: SliceContext, index: int) -> jax.Array:
        """Block ``index`` on the full ViT sequence ``x [B·N, (1+) h·w, D]`` → same shape."""
        b, n = ctx.tile_mask.shape
        h, w = ctx.slice_hw
        bn, t, d = x.shape
        if bn != b * n or t not in (h * w, h * w + 1):
            raise ValueError(f"SliceRestore expects [B·N, (1+)h·w, D] = [{b * n}, (1+){h * w}, D], got {x.shape}")
        n_cls = t - h * w
        patches = x[:, n_cls:].reshape(b, n, h, w, d)
        kw = dict(first_slice=ctx.first_slice, max_rows=self.cfg.max_rows, max_cols=self.cfg.max_cols)
        canvas = merge_slices(patches, ctx.grid, ctx.tile_mask, **kw)
        mask = canvas_mask(ctx.grid, ctx.tile_mask, slice_hw=(h, w), **kw)
        delta = split_slices(self.blocks[index](canvas, mask), ctx.grid, ctx.tile_mask, **kw)
        patches = patches + delta.astype(x.dtype)
        return jnp.concatenate([x[:, :n_cls], patches.reshape(bn, h * w, d)], axis=1)

    def hooks(self, ctx: SliceContext) -> dict[int, Callable[[jax.Array], jax.Array]]:
        """``{vit_layer: hook}`` for ``ViT.__call__(hooks=...)``."""
        h, w = ctx.slice_hw
        for name, factor in (("down", self.cfg.down), ("local_stride", self.cfg.local_stride)):
            if h % factor or w % factor:
                raise ValueError(f"slice grid {h}x{w} is not divisible by SliceRestoreConfig.{name}={factor}")
        return {layer: functools.partial(self.restore, ctx=ctx, index=i) for i, layer in enumerate(self.cfg.layers)}
