"""``TileLayout``: the host-side description of how one image is cut into encoder views.

A layout is plain data (no pixels): the planners (``plan_internvl``, ``plan_anyres``, ``plan_uhd``,
``plan_fixed``, ``plan_dual``) compute it from the image size, ``crop_views`` turns it into pixels, and
the feature-merge stage later reads ``rows``/``cols``/``orig_size`` (LLaVA-NeXT unpadding,
spec/methods.md §2.2 step 3) from the batch.

Coordinates are always ``(height, width)`` / ``(top, left, height, width)`` in pixels.
"""

from __future__ import annotations

import dataclasses

KINDS = ("internvl", "anyres", "uhd", "fixed", "dual")
GLOBAL_VIEWS = ("none", "first", "last")
GLOBAL_MODES = ("stretch", "pad")


@dataclasses.dataclass(frozen=True)
class TileLayout:
    """How an image of ``orig_size`` becomes ``num_views`` square ``tile``-pixel views.

    Fields:
      kind: planner family, one of ``KINDS``; decides the view order (see ``crop_views``).
      rows, cols: grid of local tiles cut from the canvas.
      tile: side of every view in pixels (448 InternVL, 336 CLIP).
      global_view: where the whole-image view goes: ``"none"``, ``"first"`` (LLaVA-NeXT, SliME) or
        ``"last"`` (InternVL thumbnail, INF-LLaVA low-res view).
      orig_size: ``(H, W)`` of the decoded image.
      resized_size: ``(rows * tile, cols * tile)``, the canvas the grid is cut from.
      content_box: ``(top, left, height, width)`` of the resized image inside the canvas; the rest
        of the canvas is filled with ``pad_value`` (the whole canvas when nothing is padded).
      pad_value: uint8 RGB fill of the padded canvas area (black for LLaVA-NeXT / SliME,
        the CLIP mean colour for INF-LLaVA's expand-to-square).
      global_mode: how the global view is made: ``"stretch"`` = plain resize of the whole image to
        ``tile x tile`` (aspect distorted; all reference codes), ``"pad"`` = pad to a centred square
        with ``pad_value`` first, then resize (SliME paper text, §6.2).
    """

    kind: str
    rows: int
    cols: int
    tile: int
    global_view: str
    orig_size: tuple[int, int]
    resized_size: tuple[int, int]
    content_box: tuple[int, int, int, int]
    pad_value: tuple[int, ...] = (0, 0, 0)
    global_mode: str = "stretch"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"TileLayout.kind must be one of {KINDS}, got {self.kind!r}")
        if self.global_view not in GLOBAL_VIEWS:
            raise ValueError(f"TileLayout.global_view must be one of {GLOBAL_VIEWS}, got {self.global_view!r}")
        if self.global_mode not in GLOBAL_MODES:
            raise ValueError(f"TileLayout.global_mode must be one of {GLOBAL_MODES}, got {self.global_mode!r}")
        if min(self.rows, self.cols, self.tile) < 1:
            raise ValueError(f"TileLayout needs rows, cols, tile >= 1, got {self.rows}, {self.cols}, {self.tile}")
        if min(self.orig_size) < 1:
            raise ValueError(f"TileLayout.orig_size must be positive, got {self.orig_size}")
        if self.resized_size != (self.rows * self.tile, self.cols * self.tile):
            raise ValueError(f"TileLayout.resized_size {self.resized_size} != (rows*tile, cols*tile) = "
                             f"{(self.rows * self.tile, self.cols * self.tile)}")
        top, left, height, width = self.content_box
        if top < 0 or left < 0 or height < 1 or width < 1 or top + height > self.resized_size[0] \
                or left + width > self.resized_size[1]:
            raise ValueError(f"TileLayout.content_box {self.content_box} is not inside the canvas {self.resized_size}")

    @property
    def num_grid_views(self) -> int:
        """Local views: ``rows * cols`` (twice that for ``dual``: contiguous + strided crops)."""
        return self.rows * self.cols * (2 if self.kind == "dual" else 1)

    @property
    def num_views(self) -> int:
        """All views ``crop_views`` returns: local views plus the global view if any."""
        return self.num_grid_views + (self.global_view != "none")

    @property
    def global_view_index(self) -> int:
        """Index of the whole-image view among the ``num_views`` views: 0 (first), ``num_views - 1`` (last), or
        -1 when there is none. Views are padded at the end, so it is also the index in ``[N_max]``."""
        return {"first": 0, "last": self.num_views - 1, "none": -1}[self.global_view]

    def unpad_bounds(self, feat_height: int, feat_width: int) -> tuple[int, int, int, int]:
        """Rows/cols ``(r0, r1, c0, c1)`` kept when unpadding a ``[feat_height, feat_width]`` feature map.

        The map covers the whole canvas (e.g. ``24 * rows x 24 * cols`` CLIP patches). Reproduces
        LLaVA-NeXT's ``unpad_image`` (spec/methods.md §2.2 step 3, HF ``modeling_llava_next``): from
        ``orig_size`` alone, the padded band is removed symmetrically on the long axis;
        ``feature[r0:r1, c0:c1]`` is the unpadded map.
        """
        orig_h, orig_w = self.orig_size
        if orig_w / orig_h > feat_width / feat_height:
            kept = int(round(orig_h * (feat_width / orig_w), 7))
            pad = (feat_height - kept) // 2
            return pad, feat_height - pad, 0, feat_width
        kept = int(round(orig_w * (feat_height / orig_h), 7))
        pad = (feat_width - kept) // 2
        return 0, feat_height, pad, feat_width - pad


def check_image_size(height: int, width: int) -> None:
    """Raise ``ValueError`` unless ``height`` and ``width`` are positive integers."""
    if int(height) != height or int(width) != width or height < 1 or width < 1:
        raise ValueError(f"image size must be positive integers, got height={height}, width={width}")


def plan_fixed(height: int, width: int, *, n_rows: int, n_cols: int, tile: int = 336,
               global_view: str = "none") -> TileLayout:
    """A fixed ``n_rows x n_cols`` grid: stretch the image to ``(n_rows*tile, n_cols*tile)`` and cut it.

    LLaVA-1.5-HD style (spec/methods.md §2.3): e.g. ``n_rows = n_cols = 2`` plus a downsampled whole
    image (``global_view="last"``).
    """
    check_image_size(height, width)
    canvas = (n_rows * tile, n_cols * tile)
    return TileLayout(kind="fixed", rows=n_rows, cols=n_cols, tile=tile, global_view=global_view,
                      orig_size=(height, width), resized_size=canvas, content_box=(0, 0, *canvas))
