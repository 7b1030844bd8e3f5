"""Configuration of the SliME visual connector (spec/methods.md §6.3–§6.5, §6.7).

One flat frozen dataclass; the two resamplers read their settings through
:attr:`SlimeConfig.global_resampler` / :attr:`SlimeConfig.local_resampler`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from vlm_jax.config_util import check_keys

GATE_FORMS = ("code", "paper")
REDUCTIONS = ("sum", "mean")
SEPARATORS = ("learned", "token")


@dataclasses.dataclass(frozen=True)
class ResamplerConfig:
    """One perceiver resampler (spec §6.3): ``grid²`` queries, ``num_heads`` heads of one MHA layer.

    ``pos_fp16`` [code]: the fixed sin-cos table is stored in float16 (and the key table, interpolated
    in float32, is cast back to float16), so the position embeddings carry float16 rounding.
    """

    grid: int = 12
    num_heads: int = 8
    norm_eps: float = 1e-6
    pos_fp16: bool = True

    def __post_init__(self):
        if self.grid <= 0 or self.num_heads <= 0:
            raise ValueError(f"ResamplerConfig needs positive grid and num_heads, got {self}")


@dataclasses.dataclass(frozen=True)
class SlimeConfig:
    """SliME connector settings.

    Attributes:
      global_grid: global query-former grid ``g`` (24 → 576 queries; ``g²`` must equal the patches per view
        because the gate pairs output token t with input token t).
      local_grid: per-slice compression grid (12 → 144 queries, ``mm_resampler_dim``).
      num_heads: heads of both resamplers (``Dv // 128`` = 8 for CLIP-L).
      norm_eps, pos_fp16: resampler LayerNorm epsilon and float16 position tables [code].
      act: activation of the shared ``mlp2x_gelu`` MLP.
      gate: ``"code"`` (noise std ``softplus(x·W_g) + 0.01``, ``W_noise`` dead, renormalised) or
        ``"paper"`` (noise std ``softplus(x·W_noise)``).
      expert: -1 gated mixture (stage III), 0 MLP only (stage I-a), 1 resampler → MLP only (stage I-b).
      global_only: global tokens only (stages I-a / I-b, code ``use_global_only``).
      local_only: selected local tokens only, no global tokens, no separator (stage II, ``use_local_only``).
      reduce: text-token reduction of the cosine scores, ``"sum"`` [code] or ``"mean"`` [paper].
      noise_std: std of the Gaussian noise added to the scores in training (0.1 [code] and [paper]).
      temperature: softmax temperature of the selection (``mm_resampler_temp`` = 1.0).
      top_p: default selection mass γ (0.95 in stage III and inference; 1.0 keeps every token).
      separator: ``"learned"`` (a trained ``[D]`` vector, [inferred] default) or ``"token"`` (the LLM input
        embedding of ``separator_token_id``, passed in by the model — the code's choice, id 1919).
      text_tokens: which text tokens guide the selection (§6.4 step 4): ``"instruction"`` (default, the
        batch's ``prompt_mask``: human-turn text only) or ``"all"`` (every valid non-image token, answers
        included: the code's training behaviour, which leaks the labels into the selection and differs from
        inference, where no answer exists yet — hence not the default).
    """

    global_grid: int = 24
    local_grid: int = 12
    num_heads: int = 8
    norm_eps: float = 1e-6
    pos_fp16: bool = True
    act: str = "gelu"
    gate: str = "code"
    expert: int = -1
    global_only: bool = False
    local_only: bool = False
    reduce: str = "sum"
    noise_std: float = 0.1
    temperature: float = 1.0
    top_p: float = 0.95
    separator: str = "learned"
    separator_token_id: int = 1919
    text_tokens: str = "instruction"

    def __post_init__(self):
        if self.gate not in GATE_FORMS:
            raise ValueError(f"SlimeConfig.gate={self.gate!r}; known: {GATE_FORMS}")
        if self.reduce not in REDUCTIONS:
            raise ValueError(f"SlimeConfig.reduce={self.reduce!r}; known: {REDUCTIONS}")
        if self.separator not in SEPARATORS:
            raise ValueError(f"SlimeConfig.separator={self.separator!r}; known: {SEPARATORS}")
        if self.text_tokens not in ("instruction", "all"):
            raise ValueError(f"SlimeConfig.text_tokens={self.text_tokens!r}; known: ('instruction', 'all')")
        if self.expert not in (-1, 0, 1):
            raise ValueError(f"SlimeConfig.expert={self.expert}; use -1 (gate), 0 (MLP) or 1 (resampler)")
        if self.global_only and self.local_only:
            raise ValueError("SlimeConfig: global_only and local_only are mutually exclusive")
        if self.temperature <= 0 or self.noise_std < 0 or self.top_p <= 0:
            raise ValueError(f"SlimeConfig needs temperature > 0, noise_std >= 0, top_p > 0, got {self}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SlimeConfig:
        """Build from a plain mapping (an ml_collections block); unknown keys raise."""
        d = check_keys(cls, d, "SlimeConfig")
        return cls(**dict(d))

    @property
    def global_resampler(self) -> ResamplerConfig:
        return ResamplerConfig(self.global_grid, self.num_heads, self.norm_eps, self.pos_fp16)

    @property
    def local_resampler(self) -> ResamplerConfig:
        return ResamplerConfig(self.local_grid, self.num_heads, self.norm_eps, self.pos_fp16)
