"""Tensor transforms between Hugging Face checkpoint tensors and our parameters, each declared with its inverse.

A :class:`Transform` maps ONE HF tensor of one layer to one or more of our parameters of that layer
(``to_ours``) and back (``to_hf``); every transform here is a pure permutation / reshape / split of the
entries, so ``to_hf(*to_ours(x)) == x`` and ``to_ours(to_hf(*p)) == p`` hold exactly (tested on random
arrays in ``tests/test_interop_transforms.py``). Layer stacking (our scanned ``[L, …]`` parameters ↔ one
HF tensor per layer) is the pair :func:`stack_layers` / :func:`layer_slice`.

Layouts: HF ``nn.Linear`` weights are ``[out, in]``, our kernels ``[in, out]`` with explicit head axes
(``[D, H, Dh]`` in, ``[H, Dh, D]`` out); HF patch convolutions are ``[D, C, p, p]``, our patch kernel is
``[p·p·C, D]`` in :func:`vlm_jax.vision.vit.patchify`'s (y, x, c) order.

The functions work on numpy arrays (import / export) and on JAX tracers (``jax.eval_shape`` gives the
HF shape of a parameter without reading it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = Any  # np.ndarray or jax.Array (tracers included)


def array_module(a: Array) -> ModuleType:
    """``jax.numpy`` for JAX arrays and tracers, ``numpy`` otherwise."""
    return jnp if isinstance(a, jax.Array) else np


@dataclasses.dataclass(frozen=True)
class Transform:
    """One HF tensor ↔ ``arity`` parameters of ours (one layer); ``to_hf`` is the exact inverse of ``to_ours``.

    ``to_ours(hf) -> tuple`` of ``arity`` arrays; ``to_hf(*ours) -> hf``.
    """

    name: str
    to_ours: Callable[[Array], tuple[Array, ...]]
    to_hf: Callable[..., Array]
    arity: int = 1


def one_to_one(name: str, to_ours: Callable[[Array], Array], to_hf: Callable[[Array], Array]) -> Transform:
    """A :class:`Transform` between one HF tensor and one parameter."""
    return Transform(name, lambda a: (to_ours(a),), to_hf)


IDENTITY = one_to_one("identity", lambda a: a, lambda a: a)
LINEAR = one_to_one("linear: [out, in] <-> [in, out]", lambda w: w.T, lambda k: k.T)


def heads_in(head_dim: int) -> Transform:
    """q / k / v projection weight ``[H·Dh, D]`` ↔ kernel ``[D, H, Dh]``."""
    return one_to_one(f"heads_in(Dh={head_dim})", lambda w: w.T.reshape(w.shape[1], -1, head_dim),
                      lambda k: k.reshape(k.shape[0], -1).T)


def heads_out(head_dim: int) -> Transform:
    """Output projection weight ``[D, H·Dh]`` ↔ kernel ``[H, Dh, D]``."""
    return one_to_one(f"heads_out(Dh={head_dim})", lambda w: w.T.reshape(-1, head_dim, w.shape[0]),
                      lambda k: k.reshape(-1, k.shape[-1]).T)


def head_bias(head_dim: int) -> Transform:
    """q / k / v projection bias ``[H·Dh]`` ↔ ``[H, Dh]``."""
    return one_to_one(f"head_bias(Dh={head_dim})", lambda b: b.reshape(-1, head_dim), lambda b: b.reshape(-1))


def leading_unit_axes(n: int) -> Transform:
    """HF ``[1]*n + shape`` ↔ ``shape`` (InternViT's ``[1, N, D]`` positions, ``[1, 1, D]`` CLS / SigLIP probe)."""
    return one_to_one(f"leading_unit_axes({n})", lambda a: a.reshape(a.shape[n:]),
                      lambda a: a.reshape((1,) * n + tuple(a.shape)))


def patch_conv(patch: int, channels: int) -> Transform:
    """Patch-embedding convolution ``[D, C, p, p]`` ↔ kernel ``[p·p·C, D]`` in (y, x, c) row order."""
    return one_to_one(f"patch_conv(p={patch}, C={channels})",
                      lambda w: w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0]),
                      lambda k: k.reshape(patch, patch, channels, -1).transpose(3, 2, 0, 1))


def packed_rows(parts: Sequence[Transform], rows: Sequence[int]) -> Transform:
    """One HF tensor whose rows are ``parts`` back to back (``rows[j]`` rows each), e.g. the packed
    ``in_proj_weight [3·D, D]`` of ``torch.nn.MultiheadAttention`` ↔ q, k, v kernels ``[D, H, Dh]``."""
    if len(parts) != len(rows) or any(p.arity != 1 for p in parts):
        raise ValueError("packed_rows needs one single-parameter transform per row block")
    bounds = np.cumsum(rows)[:-1].tolist()

    def to_ours(a):
        blocks = array_module(a).split(a, bounds, axis=0)
        return tuple(p.to_ours(b)[0] for p, b in zip(parts, blocks, strict=True))

    def to_hf(*ours):
        blocks = [p.to_hf(o) for p, o in zip(parts, ours, strict=True)]
        return array_module(blocks[0]).concatenate(blocks, axis=0)

    return Transform(f"packed_rows({', '.join(p.name for p in parts)})", to_ours, to_hf, arity=len(parts))


def grouped_qkv(heads: int, kv_heads: int, head_dim: int) -> Transform:
    """InternLM2's fused ``wqkv [K·(G+2)·Dh, D]`` (``G = H / K``) ↔ q ``[D, H, Dh]``, k, v ``[D, K, Dh]``.

    Rows are grouped by kv head: for kv head ``j`` come its ``G`` query heads (``j·G … j·G+G-1``), then key
    head ``j``, then value head ``j``, ``Dh`` rows each (``modeling_internlm2.py`` splits with
    ``rearrange(qkv, "b q (h gs d) -> b q h gs d", gs=G + 2)``).
    """
    if heads % kv_heads:
        raise ValueError(f"{heads} query heads are not a multiple of {kv_heads} kv heads")
    g = heads // kv_heads

    def to_ours(w):
        grouped = w.T.reshape(w.shape[1], kv_heads, g + 2, head_dim)
        return grouped[:, :, :g].reshape(w.shape[1], heads, head_dim), grouped[:, :, g], grouped[:, :, g + 1]

    def to_hf(q, k, v):
        d = q.shape[0]
        parts = [q.reshape(d, kv_heads, g, head_dim), k[:, :, None], v[:, :, None]]
        return array_module(q).concatenate(parts, axis=2).reshape(d, -1).T

    return Transform(f"grouped_qkv(H={heads}, K={kv_heads}, Dh={head_dim})", to_ours, to_hf, arity=3)


def stack_layers(per_layer: Sequence[Array]) -> np.ndarray:
    """Per-layer values ``[…] × L`` → our scanned parameter ``[L, …]`` (inverse: :func:`layer_slice`)."""
    return np.stack(per_layer)


def layer_slice(stacked: Array, i: int) -> Array:
    """Layer ``i`` of a scanned ``[L, …]`` parameter (inverse of :func:`stack_layers`)."""
    return stacked[i]
