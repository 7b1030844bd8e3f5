"""TPU attention: Pallas splash attention inside ``shard_map``, driven by an :class:`AttentionMask`.

The splash kernel (``jax.experimental.pallas.ops.tpu.splash_attention``) takes a *static* mask
(``FullMask``, ``CausalMask`` by index) and'd with *segment ids* (query ``t`` may see key ``s`` only
if ``seg_q[t] == seg_kv[s]``). Our masks are data: big_vision ``mask_ar`` groups and key validity
(DESIGN.md "Attention", anchors.md §3.5). This module maps one onto the other exactly:

* ``causal=False`` (ViT tiles, padding): ``FullMask`` with ``seg_q = 1`` and ``seg_kv = kv_valid``.
* ``causal=True``: query ``t`` sees valid key ``s`` iff ``g[s] <= g[t]``. With groups ``g``
  non-decreasing along the sequence (``ar_mask`` is a cumsum) this is the causal mask by index
  *plus* the later keys of ``t``'s own group. The index rule therefore equals the group rule when no
  valid key shares its group with the position before it (plain causal, right or left padding with
  ``mask_ar = 1``): one ``CausalMask`` call, ``seg_kv = kv_valid``.
* prefix-LM (one bidirectional block, the group ``G*`` of the first valid key, of data-dependent
  length): splash has no dynamic prefix mask, so the keys are given to the kernel twice,
  ``[k | k]`` with ``CausalMask((T, 2S), offset=S)``: every query sees the whole first copy and the
  second copy causally. Segment ids keep only the ``G*`` keys in the first copy and the other valid
  keys in the second, so each visible key enters the softmax exactly once; the gradients of the two
  copies add up through the concatenation. This is one ordinary kernel call (exact, differentiable
  by the kernel's own VJP); a merge of two calls by log-sum-exp would need the kernel's
  ``save_residuals`` mode, which has no VJP. It costs a full pass over the keys, so it runs (under
  ``lax.cond``) only when some example in the local batch has a prefix.

Supported causal structures, checked per example at run time: ``q_groups == kv_groups``, groups
non-decreasing, and every valid key that shares its group with the position before it is in ``G*``.
Examples outside that (block-causal masks with several bidirectional blocks) get NaN outputs, so a
wrong mask cannot train silently; use ``implementation="xla"`` for them. Query rows with no visible
key (padding) get finite values that callers ignore, as in ``dot_product_attention``.

Lengths are padded to a multiple of the block size (128 for short sequences, up to
:data:`MAX_BLOCK`); padded keys have segment id 0. Under an ambient mesh the kernel runs in
``jax.shard_map`` with batch over ``("data", "fsdp")`` and heads over ``"tensor"`` where they divide.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu import splash_attention as splash
from jax.sharding import PartitionSpec as P

from vlm_jax.nn.attention_mask import AttentionMask
from vlm_jax.nn.platform import target_platform
from vlm_jax.sharding import logical_to_spec

INTERPRET: bool | None = None
"""Run the kernel in Pallas interpret mode. ``None``: interpret unless the ambient mesh (or, with no
mesh, the default backend) is TPU, so CPU tests interpret while AOT compiles for a TPU topology mesh
get the real Mosaic kernel."""

MAX_BLOCK = 512
"""Largest query / key block; smaller powers of two (down to 128 lanes) are used when they divide."""

_LANES = 128


def splash_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: AttentionMask | None, *,
                     scale: float | None = None, interpret: bool | None = None) -> jax.Array:
    """Masked attention with the splash kernel. ``q: [B, T, H, Dh]``, ``k, v: [B, S, K, Dh]`` with
    ``H % K == 0`` → ``[B, T, H, Dh]``. ``mask=None`` is full attention; causal masks need ``T == S``.
    """
    b, t, h, dh = q.shape
    _check_inputs(q, k, v, mask)
    s = k.shape[1]
    if mask is None:
        mask = AttentionMask(jnp.zeros((b, t), jnp.int32), jnp.zeros((b, s), jnp.int32),
                             jnp.ones((b, s), bool), causal=False)
    scale = dh ** -0.5 if scale is None else scale
    q = q * jnp.asarray(scale, q.dtype)
    mesh = _ambient_mesh()
    interpret = _interpret() if interpret is None else interpret

    block, t_pad = _block_and_length(t)
    if mask.causal:
        prefix_seg, rest_seg, need_prefix, supported = prefix_lm_structure(mask)
        kv_segs = (prefix_seg, rest_seg)
        s_pad = t_pad
    else:
        kv_segs = (mask.kv_valid.astype(jnp.int32),)
        s_block, s_pad = _block_and_length(s)
        block = min(block, s_block)
        need_prefix = supported = None

    q = _pad_axis1(q, t_pad)
    k, v = _pad_axis1(k, s_pad), _pad_axis1(v, s_pad)
    kv_segs = tuple(_pad_axis1(seg, s_pad) for seg in kv_segs)

    def local(q, k, v, *segs):
        if not mask.causal:
            return _attend(splash.FullMask((q.shape[1], k.shape[1])), q, k, v, segs[0], block, interpret)
        return _causal_attend(q, k, v, segs[0], segs[1], segs[2], block, interpret)

    args = (q, k, v) + kv_segs + (() if need_prefix is None else (need_prefix,))
    if mesh is None:
        out = local(*args)
    else:
        q_spec, kv_spec, row_spec = _specs(mesh, b, h, k.shape[2])
        in_specs = (q_spec, kv_spec, kv_spec) + (row_spec,) * (len(args) - 3)
        out = jax.shard_map(local, mesh=mesh, in_specs=in_specs, out_specs=q_spec, check_vma=False)(*args)
    out = out[:, :t]
    if supported is not None:
        out = jnp.where(supported[:, None, None, None], out, jnp.nan)
    return out


def prefix_lm_structure(mask: AttentionMask) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Split the keys of a causal ``mask`` into the first valid group ``G*`` and the rest.

    Returns ``prefix_seg, rest_seg: int32 [B, S]`` (1 = valid key in ``G*`` / valid key not in
    ``G*``), ``need_prefix: bool [B]`` (some valid key shares its group with the position before it,
    so the index-causal rule alone is not enough) and ``supported: bool [B]`` (the structure the
    kernel handles exactly; see the module docstring).
    """
    g, valid = mask.kv_groups, mask.kv_valid
    first_group = jnp.min(jnp.where(valid, g, jnp.iinfo(jnp.int32).max), axis=1, keepdims=True)
    same_as_previous = jnp.pad(g[:, 1:] == g[:, :-1], ((0, 0), (1, 0)))
    shared = valid & same_as_previous
    in_first = g == first_group
    supported = (jnp.all(g[:, 1:] >= g[:, :-1], axis=1)
                 & jnp.all(~shared | in_first, axis=1)
                 & jnp.all(mask.q_groups == g, axis=1))
    prefix_seg = (valid & in_first).astype(jnp.int32)
    rest_seg = (valid & ~in_first).astype(jnp.int32)
    return prefix_seg, rest_seg, jnp.any(shared, axis=1), supported


def _causal_attend(q, k, v, prefix_seg, rest_seg, need_prefix, block, interpret):
    """Causal / prefix-LM attention on local shards (``[b, T, h, Dh]``, segs ``[b, S]``)."""
    t, s = q.shape[1], k.shape[1]

    def index_causal():
        mask = splash.CausalMask((t, s))
        return _attend(mask, q, k, v, prefix_seg + rest_seg, block, interpret)

    def with_prefix():
        mask = splash.CausalMask((t, 2 * s), offset=s)
        kk, vv = jnp.concatenate([k, k], axis=1), jnp.concatenate([v, v], axis=1)
        return _attend(mask, q, kk, vv, jnp.concatenate([prefix_seg, rest_seg], axis=1), block, interpret)

    return jax.lax.cond(jnp.any(need_prefix), with_prefix, index_causal)


def _attend(static_mask, q, k, v, kv_seg, block, interpret):
    """One kernel over a batch: ``q [b, T, h, Dh]``, ``k, v [b, S, K, Dh]``, ``kv_seg int32 [b, S]``."""

    def batched(q, k, v, kv_seg):
        kernel = splash.make_splash_mha(
            splash.MultiHeadMask([static_mask] * q.shape[2]), block_sizes=_block_sizes(block),
            head_shards=1, q_seq_shards=1, interpret=interpret)

        def one(q, k, v, kv_seg):  # [T, h, Dh] -> kernel layout [h, T, Dh]
            q_seg = jnp.ones(q.shape[:1], jnp.int32)
            out = kernel(q.swapaxes(0, 1), k.swapaxes(0, 1), v.swapaxes(0, 1),
                         segment_ids=splash.SegmentIds(q_seg, kv_seg))
            return out.swapaxes(0, 1)

        return jax.vmap(one)(q, k, v, kv_seg)

    if q.dtype == jnp.float32:
        return batched(q, k, v, kv_seg)
    return _under_default_precision(batched, q, k, v, kv_seg)


def _under_default_precision(fn, *args):
    """``fn(*args)`` with ``fn`` and its VJP traced at default matmul precision.

    Mosaic rejects bf16 matmuls at fp32 contract precision ("Bad lhs type"), which a global
    ``jax_default_matmul_precision="highest"`` would request. The kernel's backward is traced when
    the gradient is taken, outside this function, so the VJP is wrapped as well.
    """

    @jax.custom_vjp
    def run(*args):
        with jax.default_matmul_precision("default"):
            return fn(*args)

    def run_fwd(*args):
        with jax.default_matmul_precision("default"):
            return jax.vjp(fn, *args)

    def run_bwd(vjp, cotangent):
        with jax.default_matmul_precision("default"):
            return vjp(cotangent)

    run.defvjp(run_fwd, run_bwd)
    return run(*args)


def _block_sizes(block: int) -> splash.BlockSizes:
    return splash.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block,
                             block_q_dkv=block, block_kv_dkv=block, block_kv_dkv_compute=block,
                             use_fused_bwd_kernel=True)


def _block_and_length(n: int) -> tuple[int, int]:
    """Block size and padded length for a sequence of ``n``: pad to 128 lanes, then the largest
    power-of-two block up to :data:`MAX_BLOCK` that divides the padded length."""
    padded = -(-n // _LANES) * _LANES
    block = MAX_BLOCK
    while padded % block:
        block //= 2
    return block, padded


def _pad_axis1(x: jax.Array, length: int) -> jax.Array:
    pad = [(0, 0)] * x.ndim
    pad[1] = (0, length - x.shape[1])
    return jnp.pad(x, pad)


def _ambient_mesh():
    """The ambient mesh if the kernel should run under ``shard_map`` on it, else None."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh is None or mesh.empty or mesh._any_axis_manual:
        return None  # no mesh, or already inside a shard_map: arrays are local
    return mesh


def _interpret() -> bool:
    """Pallas interpret mode unless compiling for TPU (``INTERPRET`` overrides)."""
    if INTERPRET is not None:
        return INTERPRET
    return target_platform() != "tpu"


def _specs(mesh, batch: int, heads: int, kv_heads: int) -> tuple[P, P, P]:
    """``shard_map`` specs for q ``[B, T, H, Dh]``, k/v ``[B, S, K, Dh]`` and per-row ``[B, ...]``.

    Heads are split over ``tensor`` only when both ``H`` and ``K`` divide, so that every shard keeps
    whole GQA groups; otherwise they stay replicated.
    """
    batch_axes = logical_to_spec(("act_batch",), (batch,), mesh)[0]
    head_axes = logical_to_spec(("act_heads",), (heads,), mesh)[0]
    if head_axes is not None and logical_to_spec(("act_kv_heads",), (kv_heads,), mesh)[0] != head_axes:
        head_axes = None
    return P(batch_axes, None, head_axes, None), P(batch_axes, None, head_axes, None), P(batch_axes)


def _check_inputs(q, k, v, mask: AttentionMask | None) -> None:
    if q.ndim != 4 or k.ndim != 4 or k.shape != v.shape:
        raise ValueError(f"expected q [B, T, H, Dh] and k, v [B, S, K, Dh]; got {q.shape}, {k.shape}, "
                         f"{v.shape}")
    b, t, h, dh = q.shape
    if k.shape[0] != b or k.shape[3] != dh or h % k.shape[2]:
        raise ValueError(f"k/v {k.shape} do not match q {q.shape} (same batch and head dim, H % K == 0)")
    if mask is None:
        return
    s = k.shape[1]
    if mask.q_groups.shape != (b, t) or mask.kv_groups.shape != (b, s) or mask.kv_valid.shape != (b, s):
        raise ValueError(f"mask shapes q_groups {mask.q_groups.shape}, kv_groups {mask.kv_groups.shape}, "
                         f"kv_valid {mask.kv_valid.shape} do not match q {q.shape}, k {k.shape}")
    if mask.causal and t != s:
        raise ValueError(f"splash causal attention is self-attention (T == S), got T={t}, S={s}; "
                         "use implementation='xla' for decoding")
