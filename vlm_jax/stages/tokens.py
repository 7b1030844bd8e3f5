"""Token geometry of a VLM from its stage declarations: config validation, the static visual capacity
(device) and the image placeholder count of one prompt (host). Plain Python, no model code.
"""

from __future__ import annotations

from vlm_jax.stages.anyres import anyres_capacity, anyres_num_tokens
from vlm_jax.stages.geometry import ViewGroup, Views
from vlm_jax.stages.protocol import Site, StageConflict, VLMConfig, active_stages, check_combination, fold_views
from vlm_jax.stages.registry import STAGES


def _connector(cfg: VLMConfig):
    return next(((s, c) for s, c in active_stages(cfg, STAGES) if s.site == Site.CONNECTOR), None)


def map_tokens(cfg: VLMConfig, group: ViewGroup) -> int:
    """LLM tokens the projector makes from one ``side × side`` map of ``group`` (pixel shuffle for
    InternVL; the CLS token counted when ``keep_cls`` keeps it on the tiler's views)."""
    if cfg.projector.kind == "internvl":
        return round(group.side * cfg.projector.downsample) ** 2
    return group.side ** 2 + int(cfg.keep_cls and group.name == "views")


def validate(cfg: VLMConfig) -> None:
    """Refuse, at config load, any stage combination or stage/model setting that cannot work."""
    stages = active_stages(cfg, STAGES)
    check_combination(cfg, stages)  # pairs first, so a refused pair is named as such
    views, producer = fold_views(cfg, stages, cfg.max_views)
    for stage, stage_cfg in stages:
        stage.check(cfg, stage_cfg)
    connector = _connector(cfg)
    reshaping = producer or (connector[0] if connector else None)
    if reshaping is not None and cfg.layout != "flat":
        raise StageConflict(f"layout={cfg.layout!r} unpads the tiler's per-view maps, but stage "
                            f"{reshaping.name!r} ({reshaping.does}) lays out its own tokens: use layout='flat'")
    if reshaping is not None and cfg.keep_cls:
        raise StageConflict(f"keep_cls adds the CLS token to every view's patch map, but stage {reshaping.name!r} "
                            f"needs square patch maps: set keep_cls=False")
    if cfg.projector.kind == "internvl":
        for group in views.groups:
            shuffled = group.side * cfg.projector.downsample
            if shuffled != round(shuffled) or shuffled < 1:
                raise StageConflict(f"the internvl projector's pixel shuffle (downsample="
                                    f"{cfg.projector.downsample}) needs an integral map side, but the "
                                    f"{group.name!r} maps are {group.side}x{group.side}")


def num_image_tokens(cfg: VLMConfig, n_views: int, grid: tuple[int, int], orig_size: tuple[int, int]) -> int:
    """Image placeholder tokens the prompt of one example with ``n_views`` tiler views needs (host side)."""
    if n_views > cfg.max_views:
        raise ValueError(f"{n_views} views exceed max_views={cfg.max_views}")
    connector = _connector(cfg)
    if connector is not None:
        stage, stage_cfg = connector
        return stage.connector_tokens(cfg, stage_cfg, n_views)
    if cfg.layout == "anyres":
        return anyres_num_tokens(grid[0], grid[1], orig_size[0], orig_size[1], cfg.patch_side)
    views, _ = fold_views(cfg, active_stages(cfg, STAGES), n_views)
    return _tokens(cfg, views)


def visual_capacity(cfg: VLMConfig) -> int:
    """Static length ``V`` of the visual token sequence of one example (every tiler output fits)."""
    connector = _connector(cfg)
    if connector is not None:
        stage, stage_cfg = connector
        return stage.connector_tokens(cfg, stage_cfg, cfg.max_views)
    if cfg.layout == "anyres":
        return anyres_capacity(cfg.max_views, cfg.patch_side)
    views, _ = fold_views(cfg, active_stages(cfg, STAGES), cfg.max_views)
    return _tokens(cfg, views)


def _tokens(cfg: VLMConfig, views: Views) -> int:
    return sum(g.count * map_tokens(cfg, g) for g in views.groups)
