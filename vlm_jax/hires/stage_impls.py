"""Device-side implementations of the stages declared in :mod:`vlm_jax.stages.registry`.

Each class is stateless: ``build`` makes the stage's NNX module (kept by the VLM under the stage's name, so
parameter paths are ``<name>/...``), and one method per site applies it:

* ``hooks(module, cfg, batch)`` (VIT): ``{vit_layer: fn}`` run inside the ViT;
* ``features(module, cfg, maps, batch)`` (FEATURES): per-view feature maps → regrouped maps;
* ``tokens(module, cfg, maps, cls, batch, aux)`` (TOKENS): per-view projector tokens → new tokens;
* ``connect(module, cfg, maps, batch, guide, aux)`` (CONNECTOR): feature maps → visual tokens + valid mask.

:class:`Maps` mirrors the host-side :class:`~vlm_jax.stages.geometry.ViewGroup` with the arrays, so the
static geometry the device computes is the one the host planned.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from vlm_jax.hires.dual_perspective import DualPerspectiveEnhancement
from vlm_jax.hires.gswa import GSWA, apply_tile_weights
from vlm_jax.hires.self_mining import SelfMiningSampler
from vlm_jax.hires.slice_restore import SliceContext, SliceRestoreAdapter
from vlm_jax.hires.slime.connector import SlimeConnector
from vlm_jax.stages.geometry import ViewGroup


@dataclasses.dataclass(frozen=True)
class Maps:
    """One group of views on device: ``x [B, n, P, D]`` (P = side² patch features, or tokens after the
    projector) and ``mask bool [B, n]`` (valid views, a prefix), with the group's static geometry."""

    group: ViewGroup
    x: jax.Array
    mask: jax.Array

    def with_x(self, x: jax.Array) -> Maps:
        return dataclasses.replace(self, x=x)


@dataclasses.dataclass(frozen=True)
class Guide:
    """What the text-guided connector reads: LLM input embeddings ``[B, L, D]``, the guiding text tokens
    ``bool [B, L]``, an embedding function for token ids, and the training switch + RNG."""

    text_embeds: jax.Array | None
    text_mask: jax.Array | None
    embed: Callable[[jax.Array], jax.Array]
    train: bool = False
    rng: jax.Array | None = None


class SliceRestoreStage:
    @staticmethod
    def build(cfg, dims: Mapping[str, int], kw: Mapping[str, Any]) -> SliceRestoreAdapter:
        return SliceRestoreAdapter(cfg.slice_restore, dims["vision"], **kw)

    @staticmethod
    def hooks(module: SliceRestoreAdapter, cfg, batch: Mapping[str, jax.Array]) -> dict[int, Callable]:
        side = cfg.patch_side
        first_slice = 1 if cfg.global_view == "first" else 0
        return module.hooks(SliceContext(batch["grid"], batch["tile_mask"], (side, side), first_slice))


class DualPerspectiveStage:
    @staticmethod
    def build(cfg, dims, kw) -> DualPerspectiveEnhancement:
        return DualPerspectiveEnhancement(cfg.dem, dims["vision"], **kw)

    @staticmethod
    def features(module: DualPerspectiveEnhancement, cfg, maps: list[Maps], batch) -> list[Maps]:
        (views,) = maps
        side, n = views.group.side, cfg.dual_n
        fused = module(views.x, grid_hw=(side, side), n_rows=n, n_cols=n)  # [B, P, D]
        return [Maps(ViewGroup("fused", 1, side, per_view=False), fused[:, None], views.mask[:, :1])]


class SelfMiningStage:
    @staticmethod
    def build(cfg, dims, kw) -> SelfMiningSampler:
        return SelfMiningSampler(cfg.self_mining, dims["vision"], **kw)

    @staticmethod
    def features(module: SelfMiningSampler, cfg, maps: list[Maps], batch) -> list[Maps]:
        (views,) = maps
        side, n = views.group.side, views.group.count
        local = module(views.x[:, 1:], (side, side))  # [B, n-1, (side/r)², D]
        return [Maps(ViewGroup("global", 1, side), views.x[:, :1], views.mask[:, :1]),
                Maps(ViewGroup("local", n - 1, side // cfg.self_mining.ratio, first_view=1), local,
                     views.mask[:, 1:])]


class GSWAStage:
    @staticmethod
    def build(cfg, dims, kw) -> GSWA:
        return GSWA(cfg.gswa, dims["vision"], **kw)

    @staticmethod
    def tokens(module: GSWA, cfg, maps: list[Maps], cls: jax.Array, batch, aux: dict) -> list[Maps]:
        """Weights ``[B, N]`` over the tiler's views, applied to each view's token block (SleighVL §3.2)."""
        weights = module(cls, batch["tile_mask"], global_index=0 if cfg.global_view == "first" else -1)
        aux["gswa_weights"] = weights
        out = []
        for m in maps:
            first = m.group.first_view
            out.append(m.with_x(apply_tile_weights(m.x, weights[:, first:first + m.group.count])))
        return out


class SlimeStage:
    @staticmethod
    def build(cfg, dims, kw) -> SlimeConnector:
        return SlimeConnector(cfg.slime, dims["vision"], dims["llm"], **kw)

    @staticmethod
    def connect(module: SlimeConnector, cfg, maps: list[Maps], batch, guide: Guide,
                aux: dict) -> tuple[jax.Array, jax.Array]:
        (views,) = maps
        scfg = cfg.slime
        separator = None
        if scfg.separator == "token":
            separator = guide.embed(jnp.full((1, 1), scfg.separator_token_id, jnp.int32))[0, 0]
        visual, valid, n_kept = module(views.x, views.mask, batch["grid"], guide.text_embeds, guide.text_mask,
                                       train=guide.train, rng=guide.rng, separator_embed=separator)
        aux["slime_kept"] = n_kept
        return visual, valid
