"""Host-side visual-token geometry: plain integers, no JAX arrays, no model code.

The ViT turns each view into a square map of ``side × side`` patch features. The high-resolution
stages then regroup or shrink those maps (Self-Mining pools the local views, DEM fuses all views into
one); the projector turns each map into LLM tokens. :class:`Views` describes the maps between stages as a
tuple of :class:`ViewGroup`, and the same description tells the host how many image placeholder tokens a
prompt needs and the device how long the static visual sequence is.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ViewGroup:
    """Views of one kind that share a feature-map size.

    Attributes:
      name: ``"views"`` (every view, as the tiler made them), ``"global"``, ``"local"`` or ``"fused"``.
      count: number of views in the group.
      side: side of each view's square feature map, in patches.
      first_view: index of the group's first view among the tiler's views.
      per_view: the group still holds one feature map per tiler view (a per-view weight such as GSWA's
        applies to it); ``False`` after a stage merged several views into one map.
    """

    name: str
    count: int
    side: int
    first_view: int = 0
    per_view: bool = True


@dataclasses.dataclass(frozen=True)
class Views:
    """The feature maps of one example between two stages, as groups in token order."""

    groups: tuple[ViewGroup, ...]

    @classmethod
    def from_tiler(cls, count: int, side: int) -> Views:
        """What the ViT emits: ``count`` views of ``side × side`` patches, one group."""
        return cls((ViewGroup("views", count, side),))

    @property
    def single(self) -> ViewGroup | None:
        """The only group if the views are still the tiler's (no stage regrouped them), else None."""
        if len(self.groups) == 1 and self.groups[0].name == "views":
            return self.groups[0]
        return None

    def tokens(self, tokens_per_map) -> int:
        """Total tokens when each map of side ``s`` yields ``tokens_per_map(s)`` tokens."""
        return sum(g.count * tokens_per_map(g.side) for g in self.groups)
