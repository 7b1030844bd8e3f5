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

The high-resolution modules of the four papers plug into the same slots (``vlm_jax.hires``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vlm_jax.hires.merge import anyres_capacity, anyres_num_tokens, anyres_tokens, flat_tokens, scatter_visual
from vlm_jax.lm.config import DTYPES, LMConfig
from vlm_jax.lm.decoder import Decoder
from vlm_jax.nn.attention import ar_mask
from vlm_jax.projectors import ProjectorConfig, build_projector
from vlm_jax.sharding import constrain
from vlm_jax.vision.config import ViTConfig
from vlm_jax.vision.vit import ViT

LAYOUTS = ("flat", "anyres")


@dataclasses.dataclass(frozen=True)
class VLMConfig:
    """A VLM: towers, projector, layout and the image placeholder token.

    Attributes:
      vision, llm, projector: tower and projector configs.
      select_layer: ViT hidden state fed to the projector (HF ``vision_feature_layer``: -1 last, -2
        penultimate as LLaVA).
      keep_cls: keep the CLS token among the visual features (HF strategy "full"); LLaVA's "default"
        and InternVL drop it (GSWA reads it separately).
      layout: ``flat`` or ``anyres`` (see module docstring).
      max_views: static number of views per example ``N_max`` (tiles + global view).
      image_token_id: token id of the image placeholder in ``tokens``.
    """

    vision: ViTConfig
    llm: LMConfig
    projector: ProjectorConfig = ProjectorConfig()
    select_layer: int = -2
    keep_cls: bool = False
    layout: str = "flat"
    max_views: int = 1
    image_token_id: int = 0

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"VLMConfig.layout={self.layout!r}; known: {LAYOUTS}")
        if self.keep_cls and self.projector.kind == "internvl":
            raise ValueError("the internvl projector needs a square patch map: keep_cls must be False")
        if self.layout == "anyres" and self.max_views < 2:
            raise ValueError("anyres needs max_views >= 2 (base view + at least one tile)")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "VLMConfig":
        """Build from a nested mapping (an ml_collections ``config.model``); unknown keys raise."""
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; known: {sorted(known)}")
        proj = dict(d.pop("projector", {}))
        proj_known = {f.name for f in dataclasses.fields(ProjectorConfig)}
        if set(proj) - proj_known:
            raise ValueError(f"unknown projector keys {sorted(set(proj) - proj_known)}; known: {sorted(proj_known)}")
        return cls(vision=ViTConfig.from_dict(d.pop("vision")), llm=LMConfig.from_dict(d.pop("llm")),
                   projector=ProjectorConfig(**proj), **d)

    # --- token geometry, shared by the host (prompt building) and the device --------------------
    @property
    def patch_side(self) -> int:
        return self.vision.image_size // self.vision.patch

    @property
    def tokens_per_view(self) -> int:
        """LLM tokens one view yields (after pixel shuffle for InternVL; CLS counted when kept)."""
        if self.projector.kind == "internvl":
            return int(round(self.patch_side ** 2 * self.projector.downsample ** 2))
        return self.patch_side ** 2 + int(self.keep_cls)

    @property
    def visual_capacity(self) -> int:
        """Static length ``V`` of the visual token sequence of one example."""
        if self.layout == "anyres":
            return anyres_capacity(self.max_views, self.patch_side)
        return self.max_views * self.tokens_per_view

    def num_image_tokens(self, n_views: int, grid: tuple[int, int], orig_size: tuple[int, int]) -> int:
        """Image placeholder tokens the prompt of one example needs (host side)."""
        if n_views > self.max_views:
            raise ValueError(f"{n_views} views exceed max_views={self.max_views}")
        if self.layout == "anyres":
            return anyres_num_tokens(grid[0], grid[1], orig_size[0], orig_size[1], self.patch_side)
        return n_views * self.tokens_per_view


class VLM(nnx.Module):
    """Vision tower + projector + decoder. Call on a :doc:`Batch <DESIGN>` dict → logits."""

    def __init__(self, cfg: VLMConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.vision = ViT(cfg.vision, rngs=rngs)
        dtype, pdtype = DTYPES[cfg.llm.dtype], DTYPES[cfg.llm.param_dtype]
        self.projector = build_projector(cfg.projector, cfg.vision.hidden, cfg.llm.hidden_size,
                                         dtype=dtype, param_dtype=pdtype, rngs=rngs)
        d = cfg.llm.hidden_size
        self.image_newline = nnx.data(
            nnx.Param(jax.random.normal(rngs.params(), (d,), pdtype) / math.sqrt(d), out_sharding=("norm",))
            if cfg.layout == "anyres" else None)
        self.llm = Decoder(cfg.llm, rngs=rngs)

    def encode_images(self, pixels: jax.Array, tile_mask: jax.Array, grid: jax.Array,
                      orig_size: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``pixels [B, N, H, W, 3]`` → visual tokens ``[B, V, D]`` and ``valid [B, V]`` (a prefix)."""
        cfg = self.cfg
        b, n = pixels.shape[:2]
        flat = constrain(pixels.reshape(b * n, *pixels.shape[2:]), ("act_batch", None, None, None))
        out = self.vision(flat, select_layer=cfg.select_layer)
        feats = out.patches
        if cfg.keep_cls and out.cls is not None:
            feats = jnp.concatenate([out.cls[:, None], feats], axis=1)
        side = cfg.patch_side
        tokens = self.projector(feats.reshape(b, n, *feats.shape[1:]), (side, side))
        tokens = constrain(tokens, ("act_batch", None, None, "act_embed"))
        if cfg.layout == "anyres":
            newline = self.image_newline[...]
            return anyres_tokens(tokens, grid, orig_size, newline, side, cfg.visual_capacity)
        return flat_tokens(tokens, tile_mask)

    def embed_inputs(self, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        """Text embeddings with visual tokens scattered in: ``[B, L, D]`` and the token validity ``[B, L]``.

        Image slots left unfilled (fewer visual tokens than slots) become invalid (attention-masked).
        """
        embeds = self.llm.embed(batch["tokens"])
        valid = batch["valid"]
        if "pixels" in batch:
            visual, visual_valid = self.encode_images(batch["pixels"], batch["tile_mask"], batch["grid"],
                                                      batch["orig_size"])
            embeds, filled = scatter_visual(embeds, batch["image_slots"], visual, visual_valid)
            valid = valid & ~(batch["image_slots"] & ~filled)
        return constrain(embeds, ("act_batch", "act_len", "act_embed")), valid

    def __call__(self, batch: Mapping[str, jax.Array]) -> jax.Array:
        """Logits ``float32 [B, L, vocab]`` for a Batch (``tokens``, ``valid``, ``image_slots``, pixels...)."""
        embeds, valid = self.embed_inputs(batch)
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
