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

import importlib
import math
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vlm_jax.hires.merge import anyres_tokens, flat_tokens, scatter_visual
from vlm_jax.hires.stage_impls import Guide, Maps
from vlm_jax.lm.decoder import Decoder
from vlm_jax.model_config import VLMConfig
from vlm_jax.nn.attention import ar_mask
from vlm_jax.projectors import build_projector
from vlm_jax.sharding import constrain
from vlm_jax.stages import STAGES, Site, Stage, ViewGroup, active_stages
from vlm_jax.vision.vit import ViT

__all__ = ["VLM", "VLMConfig", "dummy_batch"]


class EncodedImages(NamedTuple):
    """Visual tokens ``[B, V, D]``, their ``valid bool [B, V]`` (a prefix) and the stages' decisions."""

    tokens: jax.Array
    valid: jax.Array
    aux: dict[str, jax.Array]


def stage_impl(spec: Stage):
    """The device-side implementation a stage declaration names (``"module:attribute"``)."""
    module, _, attribute = spec.implementation.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _compose(first, second):
    return lambda x: second(first(x))


class VLM(nnx.Module):
    """Vision tower + optional high-res stages + projector + decoder. Call on a Batch dict → logits."""

    def __init__(self, cfg: VLMConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        dv, d = cfg.vision.hidden, cfg.llm.hidden_size

        def kw(name: str) -> dict:  # every module gets its dtypes from the one precision policy
            return dict(dtypes=cfg.precision.for_module(name), rngs=rngs)

        self.vision = ViT(cfg.vision, **kw("vision"))
        for name, spec in STAGES.items():
            enabled = getattr(cfg, name) is not None
            module = stage_impl(spec).build(cfg, {"vision": dv, "llm": d}, kw(name)) if enabled else None
            setattr(self, name, nnx.data(module))
        self.projector = nnx.data(None if self._at(Site.CONNECTOR)
                                  else build_projector(cfg.projector, dv, d, **kw("projector")))
        newline = cfg.precision.for_module("image_newline")
        self.image_newline = nnx.data(nnx.Param(
            jax.random.normal(rngs.params(), (d,), newline.param_dtype) / math.sqrt(d), out_sharding=("norm",))
            if cfg.layout == "anyres" else None)
        self.llm = Decoder(cfg.llm, **kw("llm"))

    def _at(self, site: Site) -> list[tuple[object, nnx.Module]]:
        """``(implementation, module)`` of the configured stages acting at ``site``."""
        return [(stage_impl(spec), getattr(self, spec.name)) for spec, _ in active_stages(self.cfg, STAGES)
                if spec.site == site]

    def _vision(self, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, jax.Array | None]:
        """ViT over all views (VIT-site stage hooks inside) → ``feats [B, N, P(+1), Dv]``, ``cls [B, N, Dv]``."""
        cfg, pixels = self.cfg, batch["pixels"]
        b, n = pixels.shape[:2]
        flat = constrain(pixels.reshape(b * n, *pixels.shape[2:]), ("act_batch", None, None, None))
        hooks = {}
        for impl, module in self._at(Site.VIT):
            for layer, hook in impl.hooks(module, cfg, batch).items():
                hooks[layer] = hook if layer not in hooks else _compose(hooks[layer], hook)
        out = self.vision(flat, select_layer=cfg.select_layer, hooks=hooks or None)
        feats = out.patches
        if cfg.keep_cls and out.cls is not None:
            feats = jnp.concatenate([out.cls[:, None], feats], axis=1)
        cls = None if out.cls is None else out.cls.reshape(b, n, -1)
        return feats.reshape(b, n, *feats.shape[1:]), cls

    def encode_images(self, batch: Mapping[str, jax.Array], text_embeds: jax.Array | None = None, *,
                      train: bool = False, rng: jax.Array | None = None) -> EncodedImages:
        """Batch pixels ``[B, N, H, W, 3]`` → visual tokens ``[B, V, D]``, ``valid [B, V]`` (a prefix) and the
        stages' decisions (``aux``: GSWA's view weights ``[B, N]``, SliME's kept local tokens ``[B]``).

        Folds over the configured stages in site order (:mod:`vlm_jax.stages`): VIT hooks → FEATURES
        regrouping → projector (or the CONNECTOR) → TOKENS → layout. ``text_embeds [B, L, D]`` guide SliME.
        """
        cfg = self.cfg
        feats, cls = self._vision(batch)
        maps = [Maps(ViewGroup("views", cfg.max_views, cfg.patch_side), feats, batch["tile_mask"])]
        aux: dict[str, jax.Array] = {}
        for impl, module in self._at(Site.FEATURES):
            maps = impl.features(module, cfg, maps, batch)
        for impl, module in self._at(Site.CONNECTOR):
            slime = cfg.slime
            text_mask = batch["prompt_mask"] if slime.text_tokens == "instruction" else \
                batch["valid"] & ~batch["image_slots"]
            guide = Guide(text_embeds, text_mask, self.llm.embed, train, rng)
            return EncodedImages(*impl.connect(module, cfg, maps, batch, guide, aux), aux)
        maps = [m.with_x(constrain(self.projector(m.x, (m.group.side,) * 2), ("act_batch", None, None, "act_embed")))
                for m in maps]
        for impl, module in self._at(Site.TOKENS):
            maps = impl.tokens(module, cfg, maps, cls, batch, aux)
        if cfg.layout == "anyres":
            (views,) = maps
            newline = self.image_newline[...].astype(cfg.precision.for_module("image_newline").compute_dtype)
            tokens, valid = anyres_tokens(views.x, batch["grid"], batch["orig_size"], newline, cfg.patch_side,
                                          cfg.visual_capacity)
            return EncodedImages(tokens, valid, aux)
        parts = [flat_tokens(m.x, m.mask) for m in maps]
        return EncodedImages(jnp.concatenate([p[0] for p in parts], axis=1),
                             jnp.concatenate([p[1] for p in parts], axis=1), aux)

    def embed_inputs(self, batch: Mapping[str, jax.Array], *, train: bool = False,
                     rng: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """Text embeddings with visual tokens scattered in: ``[B, L, D]`` and the token validity ``[B, L]``.

        Image slots left unfilled (fewer visual tokens than slots, e.g. after SliME's selection) become
        invalid (attention-masked).
        """
        embeds = self.llm.embed(batch["tokens"])
        valid = batch["valid"]
        if "pixels" in batch:
            visual, visual_valid, _ = self.encode_images(batch, embeds, train=train, rng=rng)
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
