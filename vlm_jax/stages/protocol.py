"""The stage protocol (DESIGN.md "Stages, not forks"): what a high-resolution module declares.

Every module of the four papers is a :class:`Stage` that says where it acts (:class:`Site`), how it
changes the feature maps between the ViT and the LLM (:meth:`Stage.regroup`), and what it needs from the
model and from the stages before it. :func:`fold_views` walks the configured stages in site order with
the same declarations that the device-side model folds over, so the token geometry (host) and the static
capacities (device) can never disagree, and a combination that cannot work is refused when the config is
built, with a message naming both stages.

Host code imports this module: it holds plain Python only (no JAX arrays, no flax).
"""

from __future__ import annotations

import enum
from typing import Any

from vlm_jax.stages.geometry import Views

VLMConfig = Any  # vlm_jax.model_config.VLMConfig: not imported, the stages sit below the model config


class Site(enum.IntEnum):
    """Where a stage acts, in data-flow order."""

    VIT = 0  # inside the ViT, after chosen layers (hooks on the hidden states of all views)
    FEATURES = 1  # on the ViT's per-view feature maps, before the projector (may regroup or shrink them)
    TOKENS = 2  # on the per-view LLM tokens after the projector
    CONNECTOR = 3  # replaces the projector and the token layout


class StageConflict(ValueError):
    """A configured combination of stages (or of a stage and the model) that cannot work."""


class Stage:
    """Declarations of one high-resolution module; subclasses live in :mod:`vlm_jax.stages.registry`.

    Class attributes:
      name: the ``VLMConfig`` field holding the stage's config (``None`` = stage off).
      site: where it acts.
      paper: the section it implements.
      does: a few words on what it does, used in conflict messages.
      arrangement: the view arrangement it needs from the tiler (``"grid"``: one slice grid, ``"dual"``:
        INF-LLaVA's two interleaved grids), or None for any.
      compresses_local: it compresses the local views' tokens (at most one such stage).
      implementation: ``"module:attribute"`` of the device-side implementation (imported by the model only).
    """

    name: str = ""
    site: Site = Site.FEATURES
    paper: str = ""
    does: str = ""
    arrangement: str | None = None
    compresses_local: bool = False
    implementation: str = ""

    def check(self, cfg: VLMConfig, stage_cfg: Any) -> None:
        """Raise :class:`StageConflict` if the model alone cannot host this stage."""

    def regroup(self, cfg: VLMConfig, stage_cfg: Any, views: Views) -> Views:
        """FEATURES stages: the feature maps after this stage; raise :class:`Needs` if ``views`` do not fit.

        CONNECTOR stages also define ``connector_tokens(cfg, stage_cfg, n_views) -> int``: the visual tokens
        (image slots) of an example with ``n_views`` views.
        """
        return views


class Needs(Exception):
    """Raised by :meth:`Stage.regroup` when the incoming feature maps lack what the stage needs."""


def refuse(first: Stage, second: Stage, why: str) -> StageConflict:
    return StageConflict(f"stages {first.name!r} ({first.does}) and {second.name!r} ({second.does}) cannot be "
                         f"combined: {why}")


def active_stages(cfg: VLMConfig, registry: dict[str, Stage]) -> list[tuple[Stage, Any]]:
    """The configured stages with their configs, in site order (registry order within a site)."""
    on = [(stage, getattr(cfg, name)) for name, stage in registry.items() if getattr(cfg, name) is not None]
    return sorted(on, key=lambda pair: pair[0].site)


def check_combination(cfg: VLMConfig, stages: list[tuple[Stage, Any]]) -> None:
    """Refuse pairs whose declarations exclude each other (arrangement, two local compressors,
    a connector together with token-site stages). Raises :class:`StageConflict`."""
    for i, (a, _) in enumerate(stages):
        for b, _ in stages[i + 1:]:
            if a.arrangement and b.arrangement and a.arrangement != b.arrangement:
                raise refuse(a, b, f"{a.name} needs the tiler's views as {a.arrangement!r}, {b.name} as "
                                   f"{b.arrangement!r}")
            if a.compresses_local and b.compresses_local:
                raise refuse(a, b, "both compress the local views; choose one")
            if {a.site, b.site} == {Site.TOKENS, Site.CONNECTOR}:
                tokens, conn = (a, b) if a.site == Site.TOKENS else (b, a)
                raise refuse(tokens, conn, f"{tokens.name} acts on the projector's per-view tokens, which "
                                           f"{conn.name} replaces")


def fold_views(cfg: VLMConfig, stages: list[tuple[Stage, Any]], n_views: int) -> tuple[Views, Stage | None]:
    """The feature maps reaching the projector (or the connector) for ``n_views`` tiler views.

    Returns the views and the last stage that regrouped them (None if none did). Raises
    :class:`StageConflict` naming both stages when a stage needs what an earlier one took away.
    """
    views = Views.from_tiler(n_views, cfg.patch_side)
    producer: Stage | None = None
    for stage, stage_cfg in stages:
        if stage.site == Site.FEATURES:
            try:
                views = stage.regroup(cfg, stage_cfg, views)
            except Needs as need:
                if producer is None:
                    raise StageConflict(f"stage {stage.name!r}: {need}") from None
                raise refuse(producer, stage, f"{stage.name} {need}") from None
            producer = stage
        elif stage.site == Site.TOKENS and producer is not None and not all(g.per_view for g in views.groups):
            raise refuse(producer, stage, f"{stage.name} weighs one token block per tiler view, but "
                                          f"{producer.name} merges the views into one map")
        elif stage.site == Site.CONNECTOR and producer is not None:
            raise refuse(producer, stage, f"{stage.name} takes the tiler's per-view feature maps unchanged")
    return views, producer
