"""The one attention module: q/k/v/out :mod:`~vlm_jax.nn.einsum` projections around the attention entry point.

Used by every q/k/v attention of the code base: the ViT layers and SigLIP's pooling head, the decoder LLM
(GQA, RoPE, KV cache via ``vlm_jax.lm.attention``), GSWA's view transformer, DEM's window cross-attention,
SliME's resamplers, SliceRestore's global fusion and Self-Mining's windowed queries. ::

    q = rope(qk_norm(x · Wq + bq))           [B, T, H, Dh]     Wq: [D, H, Dh]
    k = rope(qk_norm(c · Wk + bk))           [B, S, K, Dh]     Wk: [Dc, K, Dh]   (c = context, default x)
    v = c · Wv + bv                          [B, S, K, Dh]
    y = attention(q, k, v, mask) · Wo + bo   [B, T, D]         Wo: [H, Dh, D]   (or [B, T, H·Dh] without Wo)

Cross-attention is ``context != x``; grouped-query attention is ``kv_heads < heads``. ``qk_norm`` is an
RMSNorm over the full ``H·Dh`` width before the heads split (HF ``InternVLVisionAttention``). The pieces
(:meth:`MultiHeadAttention.queries`, :meth:`~MultiHeadAttention.keys`, :meth:`~MultiHeadAttention.values`,
:meth:`~MultiHeadAttention.attend`) are public for callers that transform keys between projection and
attention (KV-cache writes, Self-Mining's windows).

Parameter layouts (``AttentionSpec.layout``): ``"nested"`` — ``q.kernel``, ``q.bias``, … ``out.kernel``,
``out.bias`` (ViT and the papers' modules); ``"flat"`` — ``q_kernel``, ``q_bias``, … ``o_kernel`` (the decoder
LLM's checkpoint layout). Both hold the same tensors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
from flax import nnx

from vlm_jax.nn.attention import IMPLEMENTATIONS, AttentionMask, dot_product_attention
from vlm_jax.nn.axis_names import ADAPTER_AXES, AxisNames
from vlm_jax.nn.einsum import DEFAULT_KERNEL_INIT, Einsum, einsum_params, project
from vlm_jax.nn.layers import RMSNorm
from vlm_jax.nn.precision import FLOAT32, Dtypes
from vlm_jax.nn.rope import apply_rope
from vlm_jax.sharding import constrain

LAYOUTS = ("nested", "flat")
_FLAT_NAMES = {"q": "q", "k": "k", "v": "v", "out": "o"}
_EQUATIONS = {"q": "btd,dhk->bthk", "k": "btd,dhk->bthk", "v": "btd,dhk->bthk", "out": "bthk,hkd->btd"}
Rope = tuple[jax.Array, jax.Array]


@dataclasses.dataclass(frozen=True)
class AttentionSpec:
    """Shape and options of a :class:`MultiHeadAttention`.

    Attributes:
      dim: query input width ``D`` (and output width with ``out_proj``).
      heads: query heads ``H``; kv_heads: key/value heads ``K`` (``H % K == 0``; None: ``H``).
      head_dim: ``Dh`` (None: ``D / H``, which must divide).
      context_dim: key/value input width ``Dc`` (None: ``D``).
      qkv_bias, out_bias: biases of the q/k/v and of the output projection.
      out_proj: the output projection ``Wo`` (False: the heads are concatenated, ``[B, T, H·Dh]``).
      qk_norm_eps: RMSNorm of queries and keys over ``H·Dh`` with this epsilon (None: no norm).
      axes: logical axis names (``vlm_jax.nn.axis_names``).
      implementation: ``vlm_jax.nn.attention.dot_product_attention`` implementation.
      layout: parameter layout (module docstring).
    """

    dim: int
    heads: int
    kv_heads: int | None = None
    head_dim: int | None = None
    context_dim: int | None = None
    qkv_bias: bool = True
    out_bias: bool = True
    out_proj: bool = True
    qk_norm_eps: float | None = None
    axes: AxisNames = ADAPTER_AXES
    implementation: str = "auto"
    layout: str = "nested"

    def __post_init__(self):
        if self.head_dim is None:
            if self.heads <= 0 or self.dim % self.heads:
                raise ValueError(f"attention width {self.dim} is not divisible by heads={self.heads}")
            object.__setattr__(self, "head_dim", self.dim // self.heads)
        object.__setattr__(self, "kv_heads", self.heads if self.kv_heads is None else self.kv_heads)
        object.__setattr__(self, "context_dim", self.dim if self.context_dim is None else self.context_dim)
        for name in ("dim", "heads", "kv_heads", "head_dim", "context_dim"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ValueError(f"AttentionSpec.{name} must be a positive int, got {getattr(self, name)!r}")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads={self.heads} must be a multiple of kv_heads={self.kv_heads}")
        if self.implementation not in IMPLEMENTATIONS:
            raise ValueError(f"attention implementation {self.implementation!r} not in {IMPLEMENTATIONS}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"attention parameter layout {self.layout!r} not in {LAYOUTS}")
        if self.layout == "flat" and self.out_bias:
            raise ValueError("the flat (LLM) parameter layout has no output bias: set out_bias=False")

    def projection(self, role: str) -> tuple[tuple[int, ...], tuple[str | None, ...], bool]:
        """``(kernel shape, kernel axes, has bias)`` of projection ``role`` in ``q, k, v, out``."""
        a, h, k, dh = self.axes, self.heads, self.kv_heads, self.head_dim
        return {"q": ((self.dim, h, dh), (a.embed, a.heads, a.head_dim), self.qkv_bias),
                "k": ((self.context_dim, k, dh), (a.embed, a.kv_heads, a.head_dim), self.qkv_bias),
                "v": ((self.context_dim, k, dh), (a.embed, a.kv_heads, a.head_dim), self.qkv_bias),
                "out": ((h, dh, self.dim), (a.heads, a.head_dim, a.embed), self.out_bias)}[role]


def head_projection(spec: AttentionSpec, role: str, *, dtypes: Dtypes = FLOAT32,
                    kernel_init: Callable = DEFAULT_KERNEL_INIT, rngs: nnx.Rngs) -> Einsum:
    """The :class:`~vlm_jax.nn.einsum.Einsum` of projection ``role`` (``q, k, v``: ``[B, T, D] → [B, T, H, Dh]``;
    ``out``: ``[B, T, H, Dh] → [B, T, D]``), for modules that need the projections without the attention
    (GSWA's weight head reads the probabilities of ``q`` and ``k`` alone)."""
    shape, axes, use_bias = spec.projection(role)
    return Einsum(_EQUATIONS[role], shape, axes=axes, use_bias=use_bias, kernel_init=kernel_init, dtypes=dtypes,
                  rngs=rngs)


class MultiHeadAttention(nnx.Module):
    """Multi-head (cross-, grouped-query) attention ``x [B, T, D], context [B, S, Dc] → [B, T, D]`` (module docstring).

    ``kernel_init`` initialises q/k/v, ``out_kernel_init`` (default: ``kernel_init``) the output projection,
    both on the ``[fan_in, fan_out]`` view of the kernel (``vlm_jax.nn.einsum``).
    """

    def __init__(self, spec: AttentionSpec, *, dtypes: Dtypes = FLOAT32, kernel_init: Callable = DEFAULT_KERNEL_INIT,
                 out_kernel_init: Callable | None = None, rngs: nnx.Rngs):
        self.spec = spec
        self.dtype = dtypes.compute_dtype
        roles = ("q", "k", "v", "out") if spec.out_proj else ("q", "k", "v")
        for role in roles:
            init = (out_kernel_init or kernel_init) if role == "out" else kernel_init
            if spec.layout == "nested":
                setattr(self, role, head_projection(spec, role, dtypes=dtypes, kernel_init=init, rngs=rngs))
                continue
            shape, axes, use_bias = spec.projection(role)
            kernel, bias = einsum_params(_EQUATIONS[role], shape, axes=axes, use_bias=use_bias, kernel_init=init,
                                         bias_init=nnx.initializers.zeros, param_dtype=dtypes.param_dtype, rngs=rngs)
            setattr(self, f"{_FLAT_NAMES[role]}_kernel", kernel)
            setattr(self, f"{_FLAT_NAMES[role]}_bias", bias)
        if not spec.out_proj:
            self.out = None
        norm = None if spec.qk_norm_eps is None else dict(eps=spec.qk_norm_eps, dtypes=dtypes)
        self.q_norm = None if norm is None else RMSNorm(spec.heads * spec.head_dim, **norm)
        self.k_norm = None if norm is None else RMSNorm(spec.kv_heads * spec.head_dim, **norm)

    def _project(self, role: str, x: jax.Array) -> jax.Array:
        if self.spec.layout == "nested":
            return getattr(self, role)(x)
        kernel, bias = (getattr(self, f"{_FLAT_NAMES[role]}_{part}") for part in ("kernel", "bias"))
        return project(_EQUATIONS[role], x, kernel[...], None if bias is None else bias[...], self.dtype)

    @staticmethod
    def _norm_heads(norm: RMSNorm | None, x: jax.Array) -> jax.Array:
        if norm is None:
            return x
        b, t, h, k = x.shape
        return norm(x.reshape(b, t, h * k)).reshape(b, t, h, k)

    def _constrain(self, x: jax.Array, names) -> jax.Array:
        return x if names is None else constrain(x, names)

    def queries(self, x: jax.Array, rope: Rope | None = None) -> jax.Array:
        """``x [B, T, D]`` → ``q [B, T, H, Dh]`` (qk-norm, then RoPE with ``rope = (cos, sin) [B, T, Dh]``)."""
        q = self._norm_heads(self.q_norm, self._project("q", x))
        q = q if rope is None else apply_rope(q, *rope)
        return self._constrain(q, self.spec.axes.act_queries)

    def keys(self, context: jax.Array, rope: Rope | None = None) -> jax.Array:
        """``context [B, S, Dc]`` → ``k [B, S, K, Dh]`` (qk-norm, then RoPE)."""
        k = self._norm_heads(self.k_norm, self._project("k", context))
        k = k if rope is None else apply_rope(k, *rope)
        return self._constrain(k, self.spec.axes.act_keys)

    def values(self, context: jax.Array) -> jax.Array:
        """``context [B, S, Dc]`` → ``v [B, S, K, Dh]``."""
        return self._constrain(self._project("v", context), self.spec.axes.act_keys)

    def attend(self, q: jax.Array, k: jax.Array, v: jax.Array, mask: AttentionMask | None = None, *,
               implementation: str | None = None) -> jax.Array:
        """The attention entry point on projected heads, then the output projection → ``[B, T, D]``
        (``[B, T, H·Dh]`` without one). ``implementation`` overrides the spec's (KV-cache decoding: ``"xla"``)."""
        out = dot_product_attention(q.astype(self.dtype), k.astype(self.dtype), v.astype(self.dtype), mask,
                                    implementation=implementation or self.spec.implementation)
        out = self._constrain(out, self.spec.axes.act_queries)
        if not self.spec.out_proj:
            return out.reshape(*out.shape[:2], -1)
        return self._project("out", out)

    def __call__(self, x: jax.Array, context: jax.Array | None = None, mask: AttentionMask | None = None, *,
                 rope: Rope | None = None) -> jax.Array:
        """Self-attention over ``x [B, T, D]``, or cross-attention to ``context [B, S, Dc]`` → ``[B, T, D]``.

        ``mask``: queries ``[B, T]``, keys ``[B, S]`` (None: every key visible). ``rope``: ``(cos, sin)``
        applied to queries and keys (self-attention positions)."""
        context = x if context is None else context
        return self.attend(self.queries(x, rope), self.keys(context, rope), self.values(context), mask)
