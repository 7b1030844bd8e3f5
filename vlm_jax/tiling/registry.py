"""The tiler registry: one entry per tiler kind (planner, options with defaults and validation, where the
whole-image view goes, how many views it can make). Used by ``data/processor.py`` and ``vlm-jax tiles``.

``make_tiler(kind, tile=..., **options)`` resolves the options (unknown ones raise, naming the kind and the
known options) and returns a :class:`Tiler` whose ``plan(H, W)`` gives the image's ``TileLayout``.

Global view = an extra view holding the whole image beside the grid tiles (spec/methods.md §2). Where each
planner puts it (see ``crop_views`` for the pixels):

  ==========  ==================================================================================
  internvl    ``"last"`` (thumbnail, §2.1) when ``thumbnail`` and ``max_tiles > 1``, else ``"none"``.
              Per image, a 1x1 grid gets no thumbnail: its single tile already is the whole image
              stretched to ``tile x tile``, and that layout reports ``global_view="none"`` (index -1).
  anyres      ``"first"`` (LLaVA-NeXT base view, §2.2), for every pinpoint (a 1x1 canvas gives 2 views).
  uhd         ``"first"`` (SliME global view, §6.2).
  fixed       its ``global_view`` option (§2.3).
  dual        ``"last"`` (INF-LLaVA low-res view after the 2n² crops, §5.2).
  ==========  ==================================================================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vlm_jax.tiling.anyres import plan_anyres
from vlm_jax.tiling.dual import plan_dual
from vlm_jax.tiling.internvl import plan_internvl
from vlm_jax.tiling.layout import GLOBAL_MODES, GLOBAL_VIEWS, TileLayout, plan_fixed
from vlm_jax.tiling.uhd import plan_uhd

Options = Mapping[str, Any]

# LLaVA-NeXT's image_grid_pinpoints as (rows, cols) of tiles: [[336, 672], [672, 336], [672, 672], [1008, 336],
# [336, 1008]] at tile 336.
ANYRES_GRIDS = ((1, 2), (2, 1), (2, 2), (3, 1), (1, 3))


def anyres_default_pinpoints(tile: int) -> list[list[int]]:
    """LLaVA-NeXT's pinpoints ``[[h, w], ...]`` scaled to ``tile`` (the released list at ``tile=336``)."""
    return [[rows * tile, cols * tile] for rows, cols in ANYRES_GRIDS]


@dataclasses.dataclass(frozen=True)
class TilerKind:
    """One registry entry.

    Attributes:
      name: the ``tiling.kind`` of a config.
      planner: ``planner(height, width, *, tile, **options) -> TileLayout``.
      defaults: ``defaults(tile) -> {option: default}``; its keys are the kind's only options.
      check: ``check(options, tile)`` raises ``ValueError`` on a bad value (options complete).
      global_view: ``global_view(options) -> "first" | "last" | "none"`` (module docstring).
      max_grid_views: ``max_grid_views(options, tile)``: the most local views any image gets.
    """

    name: str
    planner: Callable[..., TileLayout]
    defaults: Callable[[int], dict[str, Any]]
    check: Callable[[Options, int], None]
    global_view: Callable[[Options], str]
    max_grid_views: Callable[[Options, int], int]


@dataclasses.dataclass(frozen=True)
class Tiler:
    """A tiler kind with its tile size and complete, validated options (build with :func:`make_tiler`)."""

    kind: TilerKind
    tile: int
    options: Options

    def plan(self, height: int, width: int) -> TileLayout:
        """The ``TileLayout`` of an ``height x width`` image."""
        return self.kind.planner(height, width, tile=self.tile, **self.options)

    @property
    def global_view(self) -> str:
        """Where the whole-image view sits among the views: ``"first"``, ``"last"`` or ``"none"``."""
        return self.kind.global_view(self.options)

    @property
    def max_views(self) -> int:
        """The most views (local + global) any image gets."""
        return self.kind.max_grid_views(self.options, self.tile) + (self.global_view != "none")


def _require(condition: bool, kind: str, name: str, value: Any, expected: str) -> None:
    if not condition:
        raise ValueError(f"tiler {kind!r}: option {name}={value!r} must be {expected}")


def _positive_ints(kind: str, options: Options, *names: str) -> None:
    for name in names:
        value = options[name]
        _require(isinstance(value, int) and not isinstance(value, bool) and value >= 1, kind, name, value,
                 "a positive int")


def _one_of(kind: str, options: Options, name: str, allowed: Sequence[str]) -> None:
    _require(options[name] in allowed, kind, name, options[name], f"one of {tuple(allowed)}")


def _check_internvl(o: Options, tile: int) -> None:
    _positive_ints("internvl", o, "min_tiles", "max_tiles")
    _require(o["min_tiles"] <= o["max_tiles"], "internvl", "min_tiles", o["min_tiles"],
             f"<= max_tiles={o['max_tiles']}")
    _require(isinstance(o["thumbnail"], bool), "internvl", "thumbnail", o["thumbnail"], "a bool")


def _check_anyres(o: Options, tile: int) -> None:
    points = o["pinpoints"]
    valid = isinstance(points, Sequence) and len(points) > 0 and all(
        isinstance(p, Sequence) and len(p) == 2 and all(isinstance(v, int) and v >= tile and v % tile == 0 for v in p)
        for p in points)
    _require(valid, "anyres", "pinpoints", points, f"a non-empty list of [h, w] multiples of the tile {tile}")


def _check_uhd(o: Options, tile: int) -> None:
    _positive_ints("uhd", o, "max_slices")
    _require(o["max_slices"] >= 2, "uhd", "max_slices", o["max_slices"], ">= 2 (SliME always slices)")
    _one_of("uhd", o, "global_mode", GLOBAL_MODES)


def _check_fixed(o: Options, tile: int) -> None:
    _positive_ints("fixed", o, "rows", "cols")
    _one_of("fixed", o, "global_view", GLOBAL_VIEWS)


def _plan_fixed(height: int, width: int, *, tile: int, rows: int, cols: int, global_view: str) -> TileLayout:
    return plan_fixed(height, width, n_rows=rows, n_cols=cols, tile=tile, global_view=global_view)


TILERS: dict[str, TilerKind] = {t.name: t for t in (
    TilerKind("internvl", plan_internvl,
              defaults=lambda tile: dict(min_tiles=1, max_tiles=12, thumbnail=True),
              check=_check_internvl,
              global_view=lambda o: "last" if o["thumbnail"] and o["max_tiles"] > 1 else "none",
              max_grid_views=lambda o, tile: o["max_tiles"]),
    TilerKind("anyres", plan_anyres,
              defaults=lambda tile: dict(pinpoints=anyres_default_pinpoints(tile)),
              check=_check_anyres,
              global_view=lambda o: "first",
              max_grid_views=lambda o, tile: max((h // tile) * (w // tile) for h, w in o["pinpoints"])),
    TilerKind("uhd", plan_uhd,
              defaults=lambda tile: dict(max_slices=6, global_mode="stretch"),
              check=_check_uhd,
              global_view=lambda o: "first",
              # slice counts go up to k + 1 with k <= max_slices (uhd_candidate_grids)
              max_grid_views=lambda o, tile: o["max_slices"] + 1),
    TilerKind("fixed", _plan_fixed,
              defaults=lambda tile: dict(rows=1, cols=1, global_view="none"),
              check=_check_fixed,
              global_view=lambda o: o["global_view"],
              max_grid_views=lambda o, tile: o["rows"] * o["cols"]),
    TilerKind("dual", plan_dual,
              defaults=lambda tile: dict(n=3),
              check=lambda o, tile: _positive_ints("dual", o, "n"),
              global_view=lambda o: "last",
              max_grid_views=lambda o, tile: 2 * o["n"] ** 2),
)}


def tiler_kind(kind: str) -> TilerKind:
    """The registry entry of ``kind``; an unknown kind raises naming the known ones."""
    if kind not in TILERS:
        raise ValueError(f"unknown tiler kind {kind!r}; known: {', '.join(TILERS)}")
    return TILERS[kind]


def make_tiler(kind: str, *, tile: int, **options: Any) -> Tiler:
    """A :class:`Tiler` of ``kind`` cutting ``tile``-pixel views; missing options take the kind's defaults."""
    entry = tiler_kind(kind)
    if not isinstance(tile, int) or isinstance(tile, bool) or tile < 1:
        raise ValueError(f"tiler {kind!r}: tile={tile!r} must be a positive int")
    defaults = entry.defaults(tile)
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for tiler {kind!r}; known: {sorted(defaults)}")
    resolved = {**defaults, **options}
    entry.check(resolved, tile)
    return Tiler(entry, tile, resolved)
