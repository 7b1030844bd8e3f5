"""``VLMConfig``: towers, projector, layout and the optional high-resolution stages, plus the token
geometry shared by the host (how many image slots a prompt needs) and the device (static capacities).

Stage slots (DESIGN.md: one implementation per slot, every paper a preset):

=================  ==========================================================  ====================
field              what                                                        paper
=================  ==========================================================  ====================
slice_restore      adapter inside chosen ViT layers (merge slices → fuse → split)  HiRes-LLaVA §4.2
dem                dual-perspective enhancement of the 2n²+1 DCM views → 1 map    INF-LLaVA §5
self_mining        per-slice pooled-query compression (global view kept)          HiRes-LLaVA §4.2
gswa               per-view weights on the projector output                       SleighVL §3.2
slime              global adapter mixture + local compression + text selection   SliME §6
=================  ==========================================================  ====================
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from vlm_jax.config_util import check_keys
from vlm_jax.hires.dual_perspective import DEMConfig
from vlm_jax.hires.gswa import GSWAConfig
from vlm_jax.hires.merge import anyres_capacity, anyres_num_tokens
from vlm_jax.hires.self_mining import SelfMiningConfig
from vlm_jax.hires.slice_restore import SliceRestoreConfig
from vlm_jax.hires.slime.config import SlimeConfig
from vlm_jax.hires.slime.connector import num_image_slots, num_visual_tokens_capacity
from vlm_jax.lm.config import LMConfig
from vlm_jax.nn.precision import PrecisionPolicy
from vlm_jax.projectors import ProjectorConfig
from vlm_jax.vision.config import ViTConfig

LAYOUTS = ("flat", "anyres")
GLOBAL_VIEWS = ("first", "last", "none")
STAGES = {"slice_restore": SliceRestoreConfig, "dem": DEMConfig, "self_mining": SelfMiningConfig,
          "gswa": GSWAConfig, "slime": SlimeConfig}


@dataclasses.dataclass(frozen=True)
class VLMConfig:
    """A VLM: towers, projector, layout, placeholder token and optional high-res stages.

    Attributes:
      vision, llm, projector: tower and projector configs.
      select_layer: ViT hidden state fed onward (HF ``vision_feature_layer``: -1 last, -2 penultimate).
      keep_cls: keep CLS among the visual features (HF strategy "full"); GSWA reads CLS separately.
      layout: ``flat`` (views in order) or ``anyres`` (LLaVA-NeXT unpad + newline).
      max_views: static views per example ``N_max`` (tiles + global view).
      global_view: where the whole-image view sits among the valid views: ``last`` (InternVL thumbnail),
        ``first`` (LLaVA-NeXT / UHD / SliME / HiRes-LLaVA), ``none``.
      image_token_id: token id of the image placeholder in ``tokens``.
      slice_restore, dem, self_mining, gswa, slime: optional stages (module docstring).
      precision: dtypes of every module the VLM builds (``vlm_jax.nn.precision``); overrides are keyed by
        :attr:`module_names`.
    """

    vision: ViTConfig
    llm: LMConfig
    projector: ProjectorConfig = ProjectorConfig()
    select_layer: int = -2
    keep_cls: bool = False
    layout: str = "flat"
    max_views: int = 1
    global_view: str = "last"
    image_token_id: int = 0
    slice_restore: SliceRestoreConfig | None = None
    dem: DEMConfig | None = None
    self_mining: SelfMiningConfig | None = None
    gswa: GSWAConfig | None = None
    slime: SlimeConfig | None = None
    precision: PrecisionPolicy = PrecisionPolicy()

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"VLMConfig.layout={self.layout!r}; known: {LAYOUTS}")
        if self.global_view not in GLOBAL_VIEWS:
            raise ValueError(f"VLMConfig.global_view={self.global_view!r}; known: {GLOBAL_VIEWS}")
        if self.keep_cls and self.projector.kind == "internvl":
            raise ValueError("the internvl projector needs a square patch map: keep_cls must be False")
        if self.layout == "anyres" and self.max_views < 2:
            raise ValueError("anyres needs max_views >= 2 (base view + at least one tile)")
        if self.gswa is not None and not self.vision.cls_token:
            raise ValueError("GSWA weighs views by their CLS token: the ViT needs cls_token=True")
        if self.dem is not None:
            self.dual_n  # validates max_views = 2n² + 1
        if (self.self_mining is not None or self.slime is not None) and self.global_view != "first":
            raise ValueError("self_mining / slime expect the global view first (global_view='first')")
        exclusive = [n for n in ("dem", "self_mining", "slime") if getattr(self, n) is not None]
        if len(exclusive) > 1:
            raise ValueError(f"stages {exclusive} all replace the per-view feature path; choose one")
        if (self.slime is not None or self.dem is not None or self.self_mining is not None) and self.layout != "flat":
            raise ValueError("dem / self_mining / slime produce their own token layout: use layout='flat'")
        self.precision.check_modules(self.module_names)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "VLMConfig":
        """Build from a nested mapping (an ml_collections ``config.model``); unknown keys raise."""
        d = dict(d)
        d = check_keys(cls, d, "model config")
        proj = check_keys(ProjectorConfig, d.pop("projector", {}) or {}, "projector")
        for name, stage_cls in STAGES.items():
            if d.get(name) is not None:
                d[name] = stage_cls.from_dict(dict(d[name]))
        if isinstance(d.get("precision"), Mapping):
            d["precision"] = PrecisionPolicy.from_dict(d["precision"])
        return cls(vision=ViTConfig.from_dict(d.pop("vision")), llm=LMConfig.from_dict(d.pop("llm")),
                   projector=ProjectorConfig(**proj), **d)

    def with_options(self, options: Mapping[str, Any]) -> "VLMConfig":
        """A copy with dotted overrides, e.g. ``{"slime.top_p": 1.0, "slime.global_only": True}`` (stage recipes)."""
        cfg = self
        for key, value in options.items():
            head, _, field = key.partition(".")
            if not hasattr(cfg, head):
                raise ValueError(f"unknown model option {key!r}")
            if field:
                sub = getattr(cfg, head)
                if sub is None or not hasattr(sub, field):
                    raise ValueError(f"unknown model option {key!r}")
                value = dataclasses.replace(sub, **{field: value})
            cfg = dataclasses.replace(cfg, **{head: value})
        return cfg

    @property
    def module_names(self) -> tuple[str, ...]:
        """Names of the modules the VLM builds (the keys of ``precision`` overrides)."""
        built = {"vision": True, "llm": True, "projector": self.slime is None, "image_newline": self.layout == "anyres",
                 **{name: getattr(self, name) is not None for name in STAGES}}
        return tuple(name for name, present in built.items() if present)

    # --- token geometry --------------------------------------------------------------------------
    @property
    def patch_side(self) -> int:
        return self.vision.image_size // self.vision.patch

    @property
    def dual_n(self) -> int:
        """INF-LLaVA's n: ``max_views = 2n² + 1`` (n² contiguous + n² strided crops + the low-res view)."""
        n = math.isqrt(max(self.max_views - 1, 0) // 2)
        if 2 * n * n + 1 != self.max_views or n < 1:
            raise ValueError(f"dem needs max_views = 2n²+1 (e.g. 19 for n=3), got {self.max_views}")
        return n

    @property
    def tokens_per_view(self) -> int:
        """LLM tokens one full view yields (after pixel shuffle for InternVL; CLS counted when kept)."""
        if self.projector.kind == "internvl":
            return int(round(self.patch_side ** 2 * self.projector.downsample ** 2))
        return self.patch_side ** 2 + int(self.keep_cls)

    @property
    def tokens_per_slice(self) -> int:
        """Self-Mining output tokens of one slice: ``(side/r)²``."""
        return (self.patch_side // self.self_mining.ratio) ** 2

    @property
    def visual_capacity(self) -> int:
        """Static length ``V`` of the visual token sequence of one example."""
        if self.slime is not None:
            return num_visual_tokens_capacity(self.slime, self.max_views, self.patch_side ** 2)
        if self.dem is not None:
            return self.tokens_per_view
        if self.self_mining is not None:
            return self.tokens_per_view + (self.max_views - 1) * self.tokens_per_slice
        if self.layout == "anyres":
            return anyres_capacity(self.max_views, self.patch_side)
        return self.max_views * self.tokens_per_view

    def num_image_tokens(self, n_views: int, grid: tuple[int, int], orig_size: tuple[int, int]) -> int:
        """Image placeholder tokens the prompt of one example needs (host side)."""
        if n_views > self.max_views:
            raise ValueError(f"{n_views} views exceed max_views={self.max_views}")
        if self.slime is not None:
            return num_image_slots(self.slime, n_views - 1, self.patch_side ** 2)
        if self.dem is not None:
            return self.tokens_per_view
        if self.self_mining is not None:
            return self.tokens_per_view + (n_views - 1) * self.tokens_per_slice
        if self.layout == "anyres":
            return anyres_num_tokens(grid[0], grid[1], orig_size[0], orig_size[1], self.patch_side)
        return n_views * self.tokens_per_view
