"""GSWA — the Global Semantic-guided Weight Allocator of SleighVL (arXiv 2501.14276; spec/methods.md §3).

SleighVL = InternVL2-2B + GSWA: every view (grid tile or thumbnail) gets a scalar weight from the
interaction of the views' ViT ``<cls>`` tokens, and all LLM-space tokens of a view are multiplied by
its weight. Documented [paper, via summaries]: CLS per sub-image → one linear layer to a higher width →
stacked multi-head self-attention blocks → weights from self-attention → features × weights.
Everything concrete below is [inferred] (spec §3.2):

1. ``e = cls · W_in + b_in`` (``Dv → d_g``), padded views zeroed first (they can never leak).
2. ``+ type_embed[is_thumbnail]`` (learned, 2 rows). No tile-position embedding (undocumented).
3. Pre-LN Transformer blocks (:class:`vlm_jax.nn.transformer_block.TransformerBlock`) over the ``N`` view
   tokens with key masking of padded views; padded views' own rows are computed and ignored.
   ``x = x + Attn(LN1(x)); x = x + MLP(LN2(x))`` [inferred: standard ViT-style encoder block].
4. Weights, by ``weight_head``:

   - ``"attention"`` (default): the (float32) attention probabilities of the **last block** from the thumbnail
     query to the keys, averaged over heads, renormalised over the valid grid tiles (``α``), and
     ``w_i = N_t · α_i`` (mean 1 over the grid tiles). Only the query/key path of the last block
     influences the weights, so the last block is built as ``LayerNorm + Q + K`` alone: ``layers``
     counts it, i.e. ``layers - 1`` full blocks precede it.
   - ``"softmax"`` / ``"sigmoid"``: ``layers`` full blocks, a final LayerNorm and a scalar MLP head
     ``s_i = MLP(z_i)``; ``w = N_t · softmax(s)`` over the grid tiles, or ``w = 2·sigmoid(s)``.

   Thumbnail weight fixed to 1; padded views 0; an image with a single valid view (InternVL: one
   tile, no thumbnail) gets weight 1 (GSWA is the identity there).
5. :func:`apply_tile_weights` multiplies the projector **output** tokens ``[B, N, T, D]``: InternVL's
   projector starts with a LayerNorm, which cancels any positive per-view scale applied before it.

Identity at initialisation [inferred]: the query projection of the weight attention (resp. the last
layer of the scalar head) is zero-initialised, so all weights are exactly 1 and fine-tuning starts
from InternVL2-2B's behaviour; the keys stay random so the query still receives gradient.

Sizes: the defaults are the SleighVL preset chosen here [inferred]: ``d_g = 1024``, ``L = 2``,
8 heads, MLP ``4·d_g`` — with ``Dv = 1024`` and the attention head, :func:`gswa_param_count` gives
**15,749,120** parameters (lift 1,049,600; type embedding 2,048; one full block 12,596,224; the
weight attention's LayerNorm + Q + K 2,101,248). The summaries' "higher dimension" would suggest
``d_g = 2048`` (60,858,368 parameters); ``d_g`` is a config field. The scalar heads use ``L`` full
blocks plus the MLP head (preset sizes: 27,296,769).

View order: InternVL puts the thumbnail **last** among the valid views (``global_index=-1``);
LLaVA-NeXT / UHD / SliME put the global view first (``global_index=0``). The position is found per
example from ``tile_mask``, never assumed to be the static index ``N - 1``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from vlm_jax.config_util import check_keys
from vlm_jax.nn.attention import IMPLEMENTATIONS, attention_probs, full_mask
from vlm_jax.nn.axis_names import ADAPTER_AXES
from vlm_jax.nn.einsum import Dense
from vlm_jax.nn.layers import ACTIVATIONS, LayerNorm
from vlm_jax.nn.mlp import MLP
from vlm_jax.nn.multi_head import AttentionSpec, head_projection
from vlm_jax.nn.precision import FLOAT32, Dtypes
from vlm_jax.nn.transformer_block import TransformerBlock

WEIGHT_HEADS = ("attention", "softmax", "sigmoid")


@dataclasses.dataclass(frozen=True)
class GSWAConfig:
    """GSWA sizes (spec §3.2; defaults = the SleighVL preset [inferred], see the module docstring).

    Attributes:
      dim: width ``d_g`` of the view tokens after the lift.
      layers: Transformer depth ``L`` (with ``weight_head="attention"`` the last one is the weight attention).
      heads: attention heads (``dim % heads == 0``).
      mlp_ratio: MLP width of a block as a multiple of ``dim``.
      act: MLP activation (``vlm_jax.nn.layers.ACTIVATIONS``).
      norm_eps: LayerNorm epsilon.
      weight_head: ``"attention"`` (thumbnail-query attention), ``"softmax"`` or ``"sigmoid"`` (scalar head).
      attention_impl: attention implementation of the blocks (``vlm_jax.nn.attention``); default ``"xla"``:
        the sequence is the ≤ 13 views of one image, where a fused kernel brings nothing.
    """

    dim: int = 1024
    layers: int = 2
    heads: int = 8
    mlp_ratio: int = 4
    act: str = "gelu"
    norm_eps: float = 1e-6
    weight_head: str = "attention"
    attention_impl: str = "xla"

    def __post_init__(self):
        for name in ("dim", "layers", "heads", "mlp_ratio"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"GSWAConfig.{name} must be a positive int, got {value!r}")
        if self.dim % self.heads:
            raise ValueError(f"GSWAConfig.dim={self.dim} is not divisible by heads={self.heads}")
        if self.act not in ACTIVATIONS:
            raise ValueError(f"GSWAConfig.act={self.act!r} not in {sorted(ACTIVATIONS)}")
        if self.weight_head not in WEIGHT_HEADS:
            raise ValueError(f"GSWAConfig.weight_head={self.weight_head!r} not in {WEIGHT_HEADS}")
        if self.attention_impl not in IMPLEMENTATIONS:
            raise ValueError(f"GSWAConfig.attention_impl={self.attention_impl!r} not in {IMPLEMENTATIONS}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GSWAConfig:
        """Build from a mapping; unknown keys raise."""
        d = check_keys(cls, d, "GSWAConfig")
        return cls(**dict(d))

    @property
    def attention(self) -> AttentionSpec:
        """Multi-head self-attention over the view tokens (q/k/v/out ``Linear(d, d)`` with biases)."""
        return AttentionSpec(dim=self.dim, heads=self.heads, axes=ADAPTER_AXES, implementation=self.attention_impl)


class ViewRoles(NamedTuple):
    """Per-example roles of the ``N`` views. ``global_pos int32 [B]``; the masks are ``bool [B, N]``.

    ``is_global`` is all False for single-view examples (no thumbnail); ``is_grid`` = valid and not global.
    """

    global_pos: jax.Array
    is_global: jax.Array
    is_grid: jax.Array
    single_view: jax.Array


def view_roles(tile_mask: jax.Array, global_index: int) -> ViewRoles:
    """Thumbnail / grid-tile masks from ``tile_mask bool [B, N]``.

    ``global_index``: ``-1`` = the last valid view is the thumbnail (InternVL), ``0`` = the first (LLaVA-NeXT).
    """
    if global_index not in (0, -1):
        raise ValueError(f"global_index must be 0 (global view first) or -1 (thumbnail last), got {global_index!r}")
    positions = jnp.arange(tile_mask.shape[1], dtype=jnp.int32)
    if global_index == -1:
        pos = jnp.max(jnp.where(tile_mask, positions, 0), axis=1)
    else:
        pos = jnp.argmax(tile_mask, axis=1).astype(jnp.int32)
    count = tile_mask.sum(axis=1)
    is_global = (positions == pos[:, None]) & (count >= 2)[:, None]
    return ViewRoles(pos, is_global, tile_mask & ~is_global, count == 1)


def mean_one_weights(scores: jax.Array, is_grid: jax.Array) -> jax.Array:
    """``N_t · scores_i / Σ_grid scores`` on the grid tiles, 0 elsewhere. ``scores ≥ 0: [B, N]``.

    Scores are first divided by their maximum over the grid tiles (scale-invariant, and it makes equal
    scores give weights of exactly 1.0 — the identity-at-init guarantee).
    """
    s = jnp.where(is_grid, scores, 0.0)
    top = jnp.max(s, axis=1, keepdims=True)
    s = s / jnp.where(top > 0, top, 1.0)
    total = jnp.sum(s, axis=1, keepdims=True)
    n_grid = jnp.sum(is_grid, axis=1, keepdims=True).astype(s.dtype)
    return n_grid * s / jnp.where(total > 0, total, 1.0)


class ThumbnailAttentionHead(nnx.Module):
    """Weights from the thumbnail query's attention over the views (``weight_head="attention"``).

    ``x [B, N, d]`` → ``LN → Q, K`` → float32 probabilities of the thumbnail row ``[B, H, N]`` over the valid
    views → head mean → :func:`mean_one_weights` over the grid tiles.

    The query projection is zero-initialised: every logit is then exactly 0 and the attention is uniform
    over the valid keys (weights exactly 1), while the random keys keep the query gradient non-zero
    (zeroing both projections would make both gradients vanish).
    """

    def __init__(self, cfg: GSWAConfig, *, dtypes: Dtypes, rngs: nnx.Rngs):
        self.norm = LayerNorm(cfg.dim, eps=cfg.norm_eps, dtypes=dtypes)
        self.q = head_projection(cfg.attention, "q", kernel_init=nnx.initializers.zeros, dtypes=dtypes, rngs=rngs)
        self.k = head_projection(cfg.attention, "k", dtypes=dtypes, rngs=rngs)

    def __call__(self, x: jax.Array, tile_mask: jax.Array, roles: ViewRoles) -> jax.Array:
        x = self.norm(x)
        q_thumb = jnp.take_along_axis(self.q(x), roles.global_pos[:, None, None, None], axis=1)  # [B, 1, H, Dh]
        probs = attention_probs(q_thumb, self.k(x), full_mask(tile_mask, num_queries=1))[:, :, 0, :]  # [B, H, N]
        return mean_one_weights(probs.mean(axis=1), roles.is_grid)


class ScalarWeightHead(nnx.Module):
    """``s_i = Linear(act(Linear(LN(z_i))))`` → ``N_t·softmax(s)`` or ``2·sigmoid(s)`` (last layer zero-init),
    normalised in float32."""

    def __init__(self, cfg: GSWAConfig, *, dtypes: Dtypes, rngs: nnx.Rngs):
        self.norm = LayerNorm(cfg.dim, eps=cfg.norm_eps, dtypes=dtypes)
        self.mlp = MLP(cfg.dim, cfg.dim, out_dim=1, act=cfg.act, axes=ADAPTER_AXES,
                       out_kernel_init=nnx.initializers.zeros, dtypes=dtypes, rngs=rngs)
        self.normalisation = cfg.weight_head

    def __call__(self, x: jax.Array, tile_mask: jax.Array, roles: ViewRoles) -> jax.Array:
        s = self.mlp(self.norm(x))[..., 0].astype(jnp.float32)  # [B, N]
        if self.normalisation == "sigmoid":
            return 2.0 * jax.nn.sigmoid(s)
        top = jax.lax.stop_gradient(jnp.max(jnp.where(roles.is_grid, s, -jnp.inf), axis=1, keepdims=True))
        return mean_one_weights(jnp.exp(jnp.where(roles.is_grid, s - top, -jnp.inf)), roles.is_grid)


class GSWA(nnx.Module):
    """Global Semantic-guided Weight Allocator: view CLS tokens → per-view weights (module docstring)."""

    def __init__(self, cfg: GSWAConfig, vit_dim: int, *, dtypes: Dtypes = FLOAT32, rngs: nnx.Rngs):
        self.cfg = cfg
        self.vit_dim = vit_dim
        self.dtype = dtypes.compute_dtype
        self.lift = Dense(vit_dim, cfg.dim, axes=("vit_embed", "adapter_embed"), dtypes=dtypes, rngs=rngs)
        self.type_embed = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (2, cfg.dim), dtypes.param_dtype),
                                    out_sharding=(None, "adapter_embed"))
        attention_head = cfg.weight_head == "attention"
        self.blocks = nnx.List([
            TransformerBlock(cfg.attention, cfg.mlp_ratio * cfg.dim, act=cfg.act, norm_eps=cfg.norm_eps,
                             dtypes=dtypes, rngs=rngs)
            for _ in range(cfg.layers - int(attention_head))])
        self.head = (ThumbnailAttentionHead if attention_head else ScalarWeightHead)(cfg, dtypes=dtypes, rngs=rngs)

    def __call__(self, cls: jax.Array, tile_mask: jax.Array, *, global_index: int = -1) -> jax.Array:
        """Per-view weights ``[B, N]`` (compute dtype) from ``cls [B, N, Dv]`` and ``tile_mask bool [B, N]``.

        ``global_index``: thumbnail position among the *valid* views (``-1`` InternVL, ``0`` LLaVA-NeXT).
        Thumbnail → 1, padded → 0, single-view example → 1, grid tiles → learned (≥ 0).
        """
        if cls.ndim != 3 or cls.shape[-1] != self.vit_dim:
            raise ValueError(f"GSWA: cls must be [B, N, {self.vit_dim}], got {cls.shape}")
        if tile_mask.shape != cls.shape[:2] or tile_mask.dtype != jnp.bool_:
            raise ValueError(f"GSWA: tile_mask must be bool {cls.shape[:2]}, got {tile_mask.dtype} {tile_mask.shape}")
        roles = view_roles(tile_mask, global_index)
        x = jnp.where(tile_mask[..., None], cls.astype(self.dtype), jnp.zeros((), self.dtype))
        type_embed = jnp.take(self.type_embed[...], roles.is_global.astype(jnp.int32), axis=0)
        x = self.lift(x) + type_embed.astype(self.dtype)
        mask = full_mask(tile_mask)
        for block in self.blocks:
            x = block(x, mask)
        learned = self.head(x, tile_mask, roles)
        fixed_one = roles.is_global | (tile_mask & roles.single_view[:, None])
        return jnp.where(fixed_one, 1.0, jnp.where(roles.is_grid, learned, 0.0)).astype(self.dtype)


def apply_tile_weights(tokens: jax.Array, weights: jax.Array) -> jax.Array:
    """``tokens [B, N, T, D] · weights [B, N]`` (every token of a view shares its weight), in ``tokens.dtype``.

    Apply to the projector **output** (spec §3.2: a LayerNorm-first projector cancels earlier scales).
    """
    if tokens.ndim != 4 or weights.shape != tokens.shape[:2]:
        raise ValueError(f"apply_tile_weights: tokens [B, N, T, D] and weights [B, N] needed, "
                         f"got {tokens.shape} and {weights.shape}")
    return tokens * weights[:, :, None, None].astype(tokens.dtype)


def gswa_param_count(cfg: GSWAConfig, vit_dim: int) -> int:
    """Number of GSWA parameters (abstract construction, no memory). SleighVL preset: 15,749,120."""
    abstract = nnx.eval_shape(lambda: GSWA(cfg, vit_dim, rngs=nnx.Rngs(0)))
    return sum(int(v.size) for v in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
