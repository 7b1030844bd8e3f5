"""The VLM composition (DESIGN.md "Data flow"): ViT over all tiles at once → high-res stages →
projector → visual-token layout → scatter into the text embeddings at ``image_slots`` → decoder.

A model is a choice of one implementation per stage slot, all chosen by config:

==============  ====================================================================
slot            implementations
==============  ====================================================================
vision          ``ViT`` (CLIP / SigLIP / InternViT by flags), hidden layer ``select_layer``
projector       ``mlp2x_gelu`` (LLaVA) · ``internvl`` (pixel shuffle + LN + MLP)
layout          ``flat`` (tiles in order: LLaVA-1.5, InternVL) · ``anyres`` (LLaVA-NeXT unpad + newline)
==============  ====================================================================

The high-resolution stages of the four papers (SliceRestore, DEM, Self-Mining, GSWA, SliME) are optional
slots of :class:`~vlm_jax.model_config.VLMConfig`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vlm_jax.hires.dual_perspective import DualPerspectiveEnhancement
from vlm_jax.hires.gswa import GSWA, apply_tile_weights
from vlm_jax.hires.merge import anyres_tokens, flat_tokens, scatter_visual
from vlm_jax.hires.self_mining import SelfMiningSampler
from vlm_jax.hires.slice_restore import SliceContext, SliceRestoreAdapter
from vlm_jax.hires.slime.connector import SlimeConnector
from vlm_jax.lm.decoder import Decoder
from vlm_jax.model_config import VLMConfig
from vlm_jax.nn.attention import ar_mask
from vlm_jax.projectors import build_projector
from vlm_jax.sharding import constrain
from vlm_jax.vision.vit import ViT

__all__ = ["VLM", "VLMConfig", "dummy_batch"]


def _optional(enabled, make):
    """A submodule of an optional stage: built when ``enabled``, else ``None`` (kept as NNX data)."""
    return nnx.data(make() if enabled else None)


class VLM(nnx.Module):
    """Vision tower + optional high-res stages + projector + decoder. Call on a Batch dict → logits."""

    def __init__(self, cfg: VLMConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        dv, d = cfg.vision.hidden, cfg.llm.hidden_size

        def kw(name: str) -> dict:  # every module gets its dtypes from the one precision policy
            return dict(dtypes=cfg.precision.for_module(name), rngs=rngs)

        self.vision = ViT(cfg.vision, **kw("vision"))
        self.slice_restore = _optional(cfg.slice_restore,
                                       lambda: SliceRestoreAdapter(cfg.slice_restore, dv, **kw("slice_restore")))
        self.dem = _optional(cfg.dem, lambda: DualPerspectiveEnhancement(cfg.dem, dv, **kw("dem")))
        self.self_mining = _optional(cfg.self_mining,
                                     lambda: SelfMiningSampler(cfg.self_mining, dv, **kw("self_mining")))
        self.gswa = _optional(cfg.gswa, lambda: GSWA(cfg.gswa, dv, **kw("gswa")))
        self.slime = _optional(cfg.slime, lambda: SlimeConnector(cfg.slime, dv, d, **kw("slime")))
        self.projector = _optional(cfg.slime is None, lambda: build_projector(cfg.projector, dv, d, **kw("projector")))
        newline = cfg.precision.for_module("image_newline")
        self.image_newline = _optional(cfg.layout == "anyres", lambda: nnx.Param(
            jax.random.normal(rngs.params(), (d,), newline.param_dtype) / math.sqrt(d), out_sharding=("norm",)))
        self.llm = Decoder(cfg.llm, **kw("llm"))

    def _vision(self, pixels: jax.Array, tile_mask: jax.Array, grid: jax.Array):
        """ViT over all views at once (SliceRestore hooks inside) → ``feats [B, N, P(+1), Dv]``, ``cls [B, N, Dv]``."""
        cfg = self.cfg
        b, n = pixels.shape[:2]
        flat = constrain(pixels.reshape(b * n, *pixels.shape[2:]), ("act_batch", None, None, None))
        hooks = None
        if self.slice_restore is not None:
            side = cfg.patch_side
            ctx = SliceContext(grid, tile_mask, (side, side), 1 if cfg.global_view == "first" else 0)
            hooks = self.slice_restore.hooks(ctx)
        out = self.vision(flat, select_layer=cfg.select_layer, hooks=hooks)
        feats = out.patches
        if cfg.keep_cls and out.cls is not None:
            feats = jnp.concatenate([out.cls[:, None], feats], axis=1)
        cls = None if out.cls is None else out.cls.reshape(b, n, -1)
        return feats.reshape(b, n, *feats.shape[1:]), cls

    def encode_images(self, batch: Mapping[str, jax.Array], text_embeds: jax.Array | None = None, *,
                      train: bool = False, rng: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """Batch pixels ``[B, N, H, W, 3]`` → visual tokens ``[B, V, D]`` and ``valid [B, V]`` (a prefix).

        ``text_embeds [B, L, D]`` (with ``batch["prompt_mask"]``) guide SliME's token selection.
        """
        cfg = self.cfg
        tile_mask, grid = batch["tile_mask"], batch["grid"]
        feats, cls = self._vision(batch["pixels"], tile_mask, grid)
        side = cfg.patch_side
        if self.slime is not None:
            scfg = cfg.slime
            guide = batch["prompt_mask"] if scfg.text_tokens == "instruction" else batch["valid"] & ~batch["image_slots"]
            separator = None
            if scfg.separator == "token":
                separator = self.llm.embed(jnp.full((1, 1), scfg.separator_token_id, jnp.int32))[0, 0]
            visual, valid, _ = self.slime(feats, tile_mask, grid, text_embeds, guide, train=train, rng=rng,
                                          separator_embed=separator)
            return visual, valid
        if self.dem is not None:
            n = cfg.dual_n
            fused = self.dem(feats, grid_hw=(side, side), n_rows=n, n_cols=n)
            return flat_tokens(self.projector(fused[:, None], (side, side)), tile_mask[:, :1])
        if self.self_mining is not None:  # global view keeps its tokens; slices are compressed
            glob = self.projector(feats[:, :1], (side, side))
            local = self.projector(self.self_mining(feats[:, 1:], (side, side)), (side, side))
            (g, g_valid), (loc, l_valid) = flat_tokens(glob, tile_mask[:, :1]), flat_tokens(local, tile_mask[:, 1:])
            return jnp.concatenate([g, loc], axis=1), jnp.concatenate([g_valid, l_valid], axis=1)
        tokens = self.projector(feats, (side, side))
        tokens = constrain(tokens, ("act_batch", None, None, "act_embed"))
        if self.gswa is not None:  # after the projector: its LayerNorm would cancel the weights (§3.2)
            weights = self.gswa(cls, tile_mask, global_index=0 if cfg.global_view == "first" else -1)
            tokens = apply_tile_weights(tokens, weights)
        if cfg.layout == "anyres":
            newline = self.image_newline[...].astype(cfg.precision.for_module("image_newline").compute_dtype)
            return anyres_tokens(tokens, grid, batch["orig_size"], newline, side, cfg.visual_capacity)
        return flat_tokens(tokens, tile_mask)

    def embed_inputs(self, batch: Mapping[str, jax.Array], *, train: bool = False,
                     rng: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """Text embeddings with visual tokens scattered in: ``[B, L, D]`` and the token validity ``[B, L]``.

        Image slots left unfilled (fewer visual tokens than slots, e.g. after SliME's selection) become
        invalid (attention-masked).
        """
        embeds = self.llm.embed(batch["tokens"])
        valid = batch["valid"]
        if "pixels" in batch:
            visual, visual_valid = self.encode_images(batch, embeds, train=train, rng=rng)
            embeds, filled = scatter_visual(embeds, batch["image_slots"], visual, visual_valid)
            valid = valid & ~(batch["image_slots"] & ~filled)
        return constrain(embeds, ("act_batch", "act_len", "act_embed")), valid

    def __call__(self, batch: Mapping[str, jax.Array], *, train: bool = False,
                 rng: jax.Array | None = None) -> jax.Array:
        """Logits ``float32 [B, L, vocab]`` for a Batch (``tokens``, ``valid``, ``image_slots``, pixels...).

        ``train`` turns on the stochastic parts (SliME's gate and selection noise), drawn from ``rng``.
        """
        embeds, valid = self.embed_inputs(batch, train=train, rng=rng)
        mask_ar = batch.get("mask_ar", jnp.ones(valid.shape, jnp.int32))
        positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0).astype(jnp.int32)
        hidden, _ = self.llm(embeds, positions=positions, mask=ar_mask(mask_ar, valid))
        return self.llm.logits(hidden)


def dummy_batch(cfg: VLMConfig, batch_size: int, seq_len: int) -> dict[str, np.ndarray]:
    """An all-padding Batch with the right shapes and dtypes (for ``eval_shape`` / AOT compiles)."""
    t = cfg.vision.image_size
    return {
        "pixels": np.zeros((batch_size, cfg.max_views, t, t, 3), np.float32),
        "tile_mask": np.zeros((batch_size, cfg.max_views), bool),
        "grid": np.ones((batch_size, 2), np.int32),
        "orig_size": np.full((batch_size, 2), t, np.int32),
        "tokens": np.zeros((batch_size, seq_len), np.int32),
        "valid": np.zeros((batch_size, seq_len), bool),
        "image_slots": np.zeros((batch_size, seq_len), bool),
        "loss_mask": np.zeros((batch_size, seq_len), bool),
        "prompt_mask": np.zeros((batch_size, seq_len), bool),
    }
