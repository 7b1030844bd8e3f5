"""The single attention entry point: masks as data, implementation chosen per backend.

Masks follow big_vision's ``mask_ar`` idea: every token has an *attention group* (the cumulative sum
of ``mask_ar``), and query ``t`` may see key ``s`` iff ``group[s] <= group[t]`` and key ``s`` is
valid. ``mask_ar = 1`` everywhere is a causal mask; ``mask_ar = 0`` over a prefix then ``1`` is a
prefix-LM mask (the prefix attends bidirectionally); a :class:`AttentionMask` with ``causal=False``
is full attention over valid keys (the ViT). KV-cache decoding uses the same form with the cached
keys' groups.

Implementations: ``"xla"`` (CPU, decode, reference), ``"cudnn"`` (GPU flash attention via
``jax.nn.dot_product_attention``), ``"splash"`` (TPU Pallas kernel inside ``shard_map``, see
``vlm_jax.nn.splash``); ``"auto"`` picks by the platform of the ambient mesh (or the default backend).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class AttentionMask:
    """Which keys each query may attend to.

    Attributes:
      q_groups: ``int32 [B, T]`` attention group of each query.
      kv_groups: ``int32 [B, S]`` attention group of each key.
      kv_valid: ``bool [B, S]`` False for padding / empty cache slots.
      causal: static; False means full attention over valid keys (groups ignored).
    """

    q_groups: jax.Array
    kv_groups: jax.Array
    kv_valid: jax.Array
    causal: bool = dataclasses.field(default=True, metadata=dict(static=True))

    def dense(self) -> jax.Array:
        """``bool [B, 1, T, S]`` mask for the XLA / cuDNN paths."""
        allowed = jnp.broadcast_to(self.kv_valid[:, None, :],
                                   (self.kv_valid.shape[0], self.q_groups.shape[1], self.kv_valid.shape[1]))
        if self.causal:
            allowed = allowed & (self.kv_groups[:, None, :] <= self.q_groups[:, :, None])
        return allowed[:, None]


def full_mask(valid: jax.Array) -> AttentionMask:
    """Bidirectional attention over the valid tokens of ``valid: bool [B, T]``."""
    zeros = jnp.zeros(valid.shape, jnp.int32)
    return AttentionMask(zeros, zeros, valid, causal=False)


def ar_mask(mask_ar: jax.Array, valid: jax.Array) -> AttentionMask:
    """Causal / prefix-LM mask from ``mask_ar: int [B, T]`` (1 = autoregressive token) and ``valid``.

    A token with ``mask_ar = 0`` joins the group of the token before it, so a run of zeros at the start
    is a bidirectional prefix.
    """
    groups = jnp.cumsum(mask_ar.astype(jnp.int32), axis=-1)
    return AttentionMask(groups, groups, valid, causal=True)


def causal_mask(valid: jax.Array) -> AttentionMask:
    """Plain causal mask over ``valid: bool [B, T]``."""
    return ar_mask(jnp.ones(valid.shape, jnp.int32), valid)


def target_platform() -> str:
    """The platform being compiled for: the ambient mesh's device platform when a mesh is set, else the
    default backend. An ahead-of-time compile for a TPU topology from a CPU host (``vlm_jax.aot``) is "tpu"."""
    mesh = jax.sharding.get_abstract_mesh()
    device = None if mesh is None or mesh.empty else getattr(mesh, "abstract_device", None)
    return jax.default_backend() if device is None else device.platform


def default_implementation() -> str:
    """``"splash"`` on TPU, ``"cudnn"`` on GPU, else ``"xla"``."""
    return {"tpu": "splash", "gpu": "cudnn"}.get(target_platform(), "xla")


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: AttentionMask | None, *,
                          implementation: str = "auto", scale: float | None = None) -> jax.Array:
    """Scaled dot-product attention. ``q: [B, T, H, Dh]``, ``k, v: [B, S, K, Dh]`` with ``H % K == 0``
    (grouped-query attention) → ``[B, T, H, Dh]``.

    Fully masked query rows (padding) return finite values that callers must ignore.
    """
    if implementation == "auto":
        implementation = default_implementation()
        if implementation == "splash" and mask is not None and mask.causal and q.shape[1] != k.shape[1]:
            implementation = "xla"  # KV-cache decoding (T != S): the kernel's causal mask is by index
    if implementation == "splash":
        from vlm_jax.nn import splash  # TPU-only kernel; imported lazily

        return splash.splash_attention(q, k, v, mask, scale=scale)
    if implementation not in ("xla", "cudnn"):
        raise ValueError(f"unknown attention implementation {implementation!r}")
    dense = None if mask is None else mask.dense()
    if implementation == "cudnn" and q.dtype not in (jnp.bfloat16, jnp.float16):
        implementation = "xla"  # cuDNN flash attention needs half precision
    return jax.nn.dot_product_attention(q, k, v, mask=dense, scale=scale, implementation=implementation)
