"""The registry of high-resolution stages: one declaration per paper module (see :mod:`.protocol`).

=================  =========  ==============================================================  ====================
name               site       what                                                            paper
=================  =========  ==============================================================  ====================
slice_restore      VIT        adapter after chosen ViT layers (merge slices → fuse → split)   HiRes-LLaVA §4.2
dem                FEATURES   dual-perspective enhancement: the 2n²+1 DCM views → one map      INF-LLaVA §5
self_mining        FEATURES   pooled-query compression of each local view (global view kept)  HiRes-LLaVA §4.2
gswa               TOKENS     one weight per tiler view on the projector output               SleighVL §3.2
slime              CONNECTOR  global adapter mixture + local compression + text selection     SliME §6
=================  =========  ==============================================================  ====================

Accepted pairs: slice_restore with self_mining, gswa or slime; self_mining with gswa. Every other pair is
refused by the declarations (:func:`vlm_jax.stages.protocol.check_combination` and ``fold_views``).
"""

from __future__ import annotations

from typing import Any

from vlm_jax.stages.geometry import ViewGroup, Views
from vlm_jax.stages.protocol import Needs, Site, Stage, StageConflict, VLMConfig

IMPLEMENTATIONS = "vlm_jax.hires.stage_impls"


def _tiler_views(stage: Stage, views: Views) -> ViewGroup:
    group = views.single
    if group is None:
        raise Needs("needs the tiler's per-view feature maps")
    return group


def _global_view_at(stage: Stage, cfg: VLMConfig, where: str) -> None:
    if cfg.global_view != where:
        raise StageConflict(f"stage {stage.name!r} ({stage.paper}) reads the global view as the {where} view: it "
                            f"needs global_view={where!r}, got {cfg.global_view!r}")


class SliceRestore(Stage):
    name, site, paper = "slice_restore", Site.VIT, "HiRes-LLaVA §4.2"
    does = "restores the slices of one grid inside the ViT"
    arrangement = "grid"
    implementation = f"{IMPLEMENTATIONS}:SliceRestoreStage"


class DualPerspective(Stage):
    name, site, paper = "dem", Site.FEATURES, "INF-LLaVA §5"
    does = "fuses the dual-perspective views into one map"
    arrangement = "dual"
    implementation = f"{IMPLEMENTATIONS}:DualPerspectiveStage"

    def check(self, cfg: VLMConfig, stage_cfg: Any) -> None:
        _global_view_at(self, cfg, "last")  # the low-resolution view follows the 2n² crops
        cfg.dual_n  # noqa: B018 — validates max_views = 2n² + 1

    def regroup(self, cfg: VLMConfig, stage_cfg: Any, views: Views) -> Views:
        group = _tiler_views(self, views)
        return Views((ViewGroup("fused", min(group.count, 1), group.side, per_view=False),))


class SelfMining(Stage):
    name, site, paper = "self_mining", Site.FEATURES, "HiRes-LLaVA §4.2"
    does = "compresses each local view, keeping the global view"
    compresses_local = True
    implementation = f"{IMPLEMENTATIONS}:SelfMiningStage"

    def check(self, cfg: VLMConfig, stage_cfg: Any) -> None:
        _global_view_at(self, cfg, "first")
        if cfg.patch_side % stage_cfg.ratio:
            raise StageConflict(f"stage 'self_mining': the {cfg.patch_side}x{cfg.patch_side} patch map of a view "
                                f"is not divisible by ratio={stage_cfg.ratio}")

    def regroup(self, cfg: VLMConfig, stage_cfg: Any, views: Views) -> Views:
        group = _tiler_views(self, views)
        local = max(group.count - 1, 0)
        return Views((ViewGroup("global", min(group.count, 1), group.side),
                      ViewGroup("local", local, group.side // stage_cfg.ratio, first_view=1)))


class GlobalWeights(Stage):
    name, site, paper = "gswa", Site.TOKENS, "SleighVL §3.2"
    does = "weighs each view's tokens by the thumbnail's attention"
    implementation = f"{IMPLEMENTATIONS}:GSWAStage"

    def check(self, cfg: VLMConfig, stage_cfg: Any) -> None:
        if not cfg.vision.cls_token:
            raise StageConflict("stage 'gswa' weighs views by their CLS token: the ViT needs cls_token=True")
        if cfg.global_view == "none":
            raise StageConflict("stage 'gswa' computes tile weights by attention from the thumbnail's CLS token "
                                "(SleighVL §3.2); global_view='none' means the tiler makes no thumbnail. Use a "
                                "tiler with a whole-image view (e.g. internvl with thumbnail=True, "
                                "global_view='last')")


class Slime(Stage):
    name, site, paper = "slime", Site.CONNECTOR, "SliME §6"
    does = "replaces the projector with its own connector"
    compresses_local = True
    implementation = f"{IMPLEMENTATIONS}:SlimeStage"

    def check(self, cfg: VLMConfig, stage_cfg: Any) -> None:
        _global_view_at(self, cfg, "first")

    def connector_tokens(self, cfg: VLMConfig, stage_cfg: Any, n_views: int) -> int:
        """Image slots before selection (SliME §6.4): global map, separator, ``local_grid²`` per slice;
        slots the selection leaves empty are masked by the model."""
        local = max(n_views - 1, 0) * stage_cfg.local_grid ** 2
        if stage_cfg.global_only:
            return cfg.patch_side ** 2
        if stage_cfg.local_only:
            return local
        return cfg.patch_side ** 2 + 1 + local


STAGES: dict[str, Stage] = {s.name: s for s in (SliceRestore(), DualPerspective(), SelfMining(), GlobalWeights(),
                                                Slime())}
