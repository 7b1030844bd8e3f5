"""The SliME visual connector (spec/methods.md §6.1, §6.3, §6.4, §6.7) with static shapes.

Token layout of one example (valid tokens a prefix):

    [ P global tokens (GatedGlobalAdapter) ] [ separator ] [ selected local tokens, raster order ]

Local branch: each slice → 144-query resampler (``local_grid`` = 12) → the shared MLP → the slices' ``g × g``
token maps arranged in raster order over the ``(g·rows) × (g·cols)`` grid (a gather computed from ``grid``)
→ text-guided selection with γ → stable compaction. Static length ``V = P + 1 + max_slices·g²``.
Stage options: ``global_only`` (stages I-a / I-b: ``V = P``) and ``local_only`` (stage II: no global tokens,
no separator, ``V = max_slices·g²``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from vlm_jax.hires.slime.config import SlimeConfig
from vlm_jax.hires.slime.gated_adapter import GatedGlobalAdapter
from vlm_jax.hires.slime.resampler import Resampler
from vlm_jax.hires.slime.selection import compact, selection_scores, top_p_keep
from vlm_jax.nn.precision import FLOAT32, Dtypes


def num_visual_tokens_capacity(cfg: SlimeConfig, max_views: int, patches: int) -> int:
    """Static visual length ``V`` for ``max_views`` views (global + ``max_views - 1`` slices) of ``patches``."""
    return num_image_slots(cfg, max_views - 1, patches)


def num_image_slots(cfg: SlimeConfig, n_slices: int, patches: int) -> int:
    """Image placeholder slots one prompt needs (host side): the token count *before* selection for an
    image with ``n_slices = rows·cols`` slices; slots left empty by the selection are masked by the model."""
    local = n_slices * cfg.local_grid ** 2
    if cfg.global_only:
        return patches
    if cfg.local_only:
        return local
    return patches + 1 + local


def raster_local_tokens(tokens: jax.Array, grid: jax.Array, slice_mask: jax.Array,
                        g: int) -> tuple[jax.Array, jax.Array]:
    """Arrange per-slice token maps in raster order over the whole image (spec §6.4 step 3).

    Args:
      tokens: ``[B, S, g², D]`` slices in row-major tile order, each a row-major ``g × g`` map.
      grid: ``int [B, 2]`` (rows, cols) of each example's slice grid; slice_mask: ``bool [B, S]``.
    Returns: ``[B, S·g², D]`` where position ``k`` holds row ``k // (g·cols)``, column ``k % (g·cols)`` of the
      ``(g·rows) × (g·cols)`` map, and ``valid [B, S·g²]`` (the first ``rows·cols·g²``; zeros elsewhere).
    """
    b, s, t, d = tokens.shape
    rows, cols = grid[:, 0:1], jnp.maximum(grid[:, 1:2], 1)
    k = jnp.arange(s * t)[None, :]
    r, c = k // (g * cols), k % (g * cols)
    tile = (r // g) * cols + c // g
    src = tile * t + (r % g) * g + c % g
    tile_ok = jnp.take_along_axis(slice_mask, jnp.clip(tile, 0, s - 1), axis=1)
    valid = (k < rows * cols * t) & (tile < s) & tile_ok
    src = jnp.where(valid, src, 0)
    out = jnp.take_along_axis(tokens.reshape(b, s * t, d), src[..., None], axis=1)
    return jnp.where(valid[..., None], out, 0), valid


class SlimeConnector(nnx.Module):
    """Vision features of all views → SliME visual tokens. Parameters: ``projector`` (gated global adapter:
    ``mlp``, ``resampler``, ``w_gate``, ``w_noise``), ``sampler`` (the local resampler), ``separator``."""

    def __init__(self, cfg: SlimeConfig, vit_dim: int, llm_dim: int, *, dtypes: Dtypes = FLOAT32, rngs: nnx.Rngs):
        self.cfg = cfg
        kw = dict(dtypes=dtypes, rngs=rngs)
        self.projector = GatedGlobalAdapter(cfg, vit_dim, llm_dim, **kw)
        self.sampler = Resampler(cfg.local_resampler, vit_dim, **kw)
        # [inferred] learned separator, initialised like LLaVA-NeXT's image_newline (N(0, 1/D)).
        self.separator = nnx.data(
            nnx.Param(jax.random.normal(rngs.params(), (llm_dim,), dtypes.param_dtype) / math.sqrt(llm_dim),
                      out_sharding=("norm",))
            if cfg.separator == "learned" else None)

    def __call__(self, feats: jax.Array, tile_mask: jax.Array, grid: jax.Array, text_embeds: jax.Array,
                 prompt_mask: jax.Array, *, train: bool = False, rng: jax.Array | None = None,
                 gamma: float | jax.Array | None = None,
                 separator_embed: jax.Array | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Visual tokens of a batch.

        Args:
          feats: ``[B, N, P, Dv]`` ViT patch tokens; view 0 the global view, views ``1..`` the slices row-major;
            ``tile_mask: bool [B, N]`` (padded views last); ``grid: int [B, 2]`` (rows, cols).
          text_embeds: ``[B, L, D]`` LLM input embeddings; ``prompt_mask: bool [B, L]`` the text tokens that guide
            the selection (instruction tokens, see ``selection`` module docstring).
          train: adds the gate noise and the selection noise, both drawn from ``rng``.
          gamma: selection mass γ (default ``cfg.top_p``); 1.0 keeps every local token.
          separator_embed: ``[D]`` LLM embedding of ``cfg.separator_token_id``; required iff
            ``cfg.separator == "token"``.
        Returns: ``visual [B, V, D]``, ``valid bool [B, V]`` (a prefix) and ``n_kept int32 [B]`` — local tokens
          kept by the selection.
        """
        cfg = self.cfg
        b, n, p, _ = feats.shape
        side = math.isqrt(p)
        if side * side != p:
            raise ValueError(f"SlimeConnector: {p} tokens per view is not a square patch map")
        if tile_mask.shape != (b, n) or grid.shape != (b, 2):
            raise ValueError(f"SlimeConnector: tile_mask {tile_mask.shape} / grid {grid.shape} do not match "
                             f"feats {feats.shape}")
        if not cfg.global_only and n < 2:
            raise ValueError("SlimeConnector: the local branch needs at least one slice view (N >= 2)")
        gate_rng, select_rng = jax.random.split(rng) if rng is not None else (None, None)
        parts, valids = [], []
        if not cfg.local_only:
            parts.append(self.projector(feats[:, 0], (side, side), train=train, rng=gate_rng))
            valids.append(jnp.broadcast_to(tile_mask[:, :1], (b, p)))
        n_kept = jnp.zeros((b,), jnp.int32)
        if not cfg.global_only:
            if not cfg.local_only:
                parts.append(self._separator(separator_embed, b, parts[0].dtype))
                valids.append(tile_mask[:, :1])
            local = self.projector.mlp(self.sampler(feats[:, 1:], (side, side)))
            local, local_valid = raster_local_tokens(local, grid, tile_mask[:, 1:], cfg.local_grid)
            probs = selection_scores(local, local_valid, text_embeds, prompt_mask, reduce=cfg.reduce,
                                     noise_std=cfg.noise_std if train else 0.0, rng=select_rng,
                                     temperature=cfg.temperature)
            keep = top_p_keep(probs, local_valid, cfg.top_p if gamma is None else gamma)
            local, local_valid, n_kept = compact(local, keep)
            parts.append(local)
            valids.append(local_valid)
        return jnp.concatenate(parts, axis=1), jnp.concatenate(valids, axis=1), n_kept

    def _separator(self, separator_embed: jax.Array | None, batch: int, dtype) -> jax.Array:
        """``[B, 1, D]`` separator token: the learned vector or the model-provided LLM token embedding."""
        if self.cfg.separator == "learned":
            if separator_embed is not None:
                raise ValueError("SlimeConnector: separator='learned' takes no separator_embed")
            sep = self.separator[...]
        else:
            if separator_embed is None:
                raise ValueError(f"SlimeConnector: separator='token' needs separator_embed (the LLM embedding "
                                 f"of token {self.cfg.separator_token_id})")
            sep = separator_embed
        return jnp.broadcast_to(sep.astype(dtype), (batch, 1, sep.shape[-1]))
