"""Shared attention / MLP settings of the HiRes-LLaVA modules (spec/methods.md §4.2).

The SliceRestore adapter and the Self-Mining Sampler reuse the ViT's own building blocks
(``vlm_jax.vision.blocks``: multi-head attention with ``vit_*``-named parameters, MLP, LayerNorm),
which are parameterised by a :class:`~vlm_jax.vision.config.ViTConfig`. :func:`block_config` builds
the one-layer config that describes such a block of width ``dim``; its patch / image-size fields
are placeholders the blocks never read.
"""

from __future__ import annotations

from vlm_jax.vision.config import ViTConfig


def block_config(dim: int, *, heads: int, mlp: int, act: str, norm_eps: float, dtype: str, param_dtype: str,
                 attention_impl: str) -> ViTConfig:
    """A ``ViTConfig`` for blocks of width ``dim`` with ``heads`` heads (``dim % heads == 0``) and an
    MLP of width ``mlp``; validation (divisibility, known names) is the ViT config's."""
    return ViTConfig(hidden=dim, layers=1, heads=heads, mlp=mlp, patch=1, image_size=1, act=act, norm_eps=norm_eps,
                     dtype=dtype, param_dtype=param_dtype, attention_impl=attention_impl)
