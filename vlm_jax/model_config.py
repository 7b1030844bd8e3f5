"""``VLMConfig``: towers, projector, layout and the optional high-resolution stages, plus the token
geometry shared by the host (how many image slots a prompt needs) and the device (static capacities).

The optional high-resolution stages (``slice_restore``, ``dem``, ``self_mining``, ``gswa``, ``slime``) are
declared in :mod:`vlm_jax.stages.registry`; validation and the token geometry fold over those declarations
(:mod:`vlm_jax.stages.tokens`), so a combination either works or is refused here, naming both stages.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from vlm_jax import stages
from vlm_jax.config_util import check_keys
from vlm_jax.hires.dual_perspective import DEMConfig
from vlm_jax.hires.gswa import GSWAConfig
from vlm_jax.hires.self_mining import SelfMiningConfig
from vlm_jax.hires.slice_restore import SliceRestoreConfig
from vlm_jax.hires.slime.config import SlimeConfig
from vlm_jax.lm.config import LMConfig
from vlm_jax.nn.precision import PrecisionPolicy
from vlm_jax.projectors import ProjectorConfig
from vlm_jax.vision.config import ViTConfig

LAYOUTS = ("flat", "anyres")
GLOBAL_VIEWS = ("first", "last", "none")
STAGE_CONFIGS = {"slice_restore": SliceRestoreConfig, "dem": DEMConfig, "self_mining": SelfMiningConfig,
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
      image_token_id: token id of the image placeholder in ``tokens``; must be ``< llm.vocab_size``.
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
        if not 0 <= self.image_token_id < self.llm.vocab_size:
            raise ValueError(
                f"VLMConfig.image_token_id={self.image_token_id} is outside the LLM vocabulary [0, "
                f"llm.vocab_size={self.llm.vocab_size}): its embedding lookup would read past the table (NaN rows). "
                "Give the model a row for it: llm.vocab_size = the tokenizer's vocab_size after with_image_token() "
                "(rows grown by vlm_jax.lm.resize_vocab), or the checkpoint's padded vocabulary (llava-hf: 32064)")
        if self.layout == "anyres" and self.max_views < 2:
            raise ValueError("anyres needs max_views >= 2 (base view + at least one tile)")
        stages.validate(self)
        self.precision.check_modules(self.module_names)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VLMConfig:
        """Build from a nested mapping (an ml_collections ``config.model``); unknown keys raise."""
        d = dict(d)
        d = check_keys(cls, d, "model config")
        proj = check_keys(ProjectorConfig, d.pop("projector", {}) or {}, "projector")
        for name, stage_cls in STAGE_CONFIGS.items():
            if d.get(name) is not None:
                d[name] = stage_cls.from_dict(dict(d[name]))
        if isinstance(d.get("precision"), Mapping):
            d["precision"] = PrecisionPolicy.from_dict(d["precision"])
        return cls(vision=ViTConfig.from_dict(d.pop("vision")), llm=LMConfig.from_dict(d.pop("llm")),
                   projector=ProjectorConfig(**proj), **d)

    def with_options(self, options: Mapping[str, Any]) -> VLMConfig:
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
                 **{name: getattr(self, name) is not None for name in STAGE_CONFIGS}}
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
        """LLM tokens one full tiler view yields (after pixel shuffle for InternVL; CLS counted when kept)."""
        return stages.map_tokens(self, stages.ViewGroup("views", 1, self.patch_side))

    @property
    def visual_capacity(self) -> int:
        """Static length ``V`` of the visual token sequence of one example."""
        return stages.visual_capacity(self)

    def num_image_tokens(self, n_views: int, grid: tuple[int, int], orig_size: tuple[int, int]) -> int:
        """Image placeholder tokens the prompt of one example needs (host side)."""
        return stages.num_image_tokens(self, n_views, grid, orig_size)
