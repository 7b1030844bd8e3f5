"""Configuration of the vision tower (ViT) shared by the CLIP, SigLIP and InternViT families.

One frozen dataclass covers the three families; the differences are flags (DESIGN.md "vision/",
spec/parity.md §1.3):

| field        | CLIP                      | SigLIP                    | InternViT (HF InternVL)          |
|--------------|---------------------------|---------------------------|----------------------------------|
| cls_token    | yes (pos-emb includes it) | no                        | yes (pos-emb includes it)        |
| pre_norm     | ``pre_layrnorm``          | no                        | no                               |
| patch_bias   | no                        | yes                       | yes                              |
| act          | quick_gelu                | gelu_tanh                 | gelu                             |
| final_norm   | "cls" (pooler only)       | "tokens"                  | "none" (mean pooling) / "tokens" |
| layer_scale  | no                        | no                        | ``lambda_1`` / ``lambda_2``      |
| qk_norm      | no                        | no                        | optional (RMSNorm over heads·Dh) |
| norm         | layer                     | layer                     | layer or rms                     |
| map_head     | no                        | optional ``head``         | no                               |
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from vlm_jax.config_util import check_keys
from vlm_jax.nn.attention import IMPLEMENTATIONS
from vlm_jax.nn.layers import ACTIVATIONS, NORMS
from vlm_jax.nn.precision import refuse_dtype_keys
from vlm_jax.nn.stack import REMAT_POLICIES

FINAL_NORMS = ("none", "tokens", "cls")


@dataclasses.dataclass(frozen=True)
class ViTConfig:
    """Sizes and family flags of a ViT encoder.

    Attributes:
      hidden, layers, heads, mlp: width D, depth L, attention heads H (D % H == 0), MLP width.
      patch: square patch side p in pixels; image_size: square training resolution; the patch grid is
        ``image_size // p`` per side (SigLIP So400m/14: 384 px -> 27, the last 6 pixels are unused,
        as with HF's "valid" patch convolution).
      channels: input channels (3).
      act: MLP activation name from ``vlm_jax.nn.layers.ACTIVATIONS``.
      cls_token: prepend a learned CLS token (its position embedding is row 0 of the table).
      pre_norm: LayerNorm on the embeddings before layer 0 (CLIP ``pre_layrnorm``).
      final_norm: where the final LayerNorm applies: "tokens" (whole sequence, the HF
        ``last_hidden_state``), "cls" (CLIP: only the pooled CLS token) or "none" (no parameter).
      patch_bias: bias of the patch-embedding projection.
      layer_scale: per-channel residual scales ``lambda_1``/``lambda_2`` (InternViT).
      qk_norm: RMSNorm of queries and keys over the full ``H·Dh`` width (InternViT-6B style).
      norm: "layer" (LayerNorm) or "rms" (RMSNorm) inside the encoder layers.
      norm_eps, qk_norm_eps: epsilons of the layer norms and of the qk RMSNorm.
      attn_bias: bias of the q/k/v projections (the output projection always has one).
      map_head: SigLIP multi-head attention pooling head (``pool``).
      remat: remat policy of the layer scan (``vlm_jax.nn.stack.REMAT_POLICIES``).
      attention_impl: ``vlm_jax.nn.attention.dot_product_attention`` implementation.
    """

    hidden: int
    layers: int
    heads: int
    mlp: int
    patch: int
    image_size: int
    act: str
    channels: int = 3
    cls_token: bool = False
    pre_norm: bool = False
    final_norm: str = "tokens"
    patch_bias: bool = True
    layer_scale: bool = False
    qk_norm: bool = False
    norm: str = "layer"
    norm_eps: float = 1e-6
    qk_norm_eps: float = 1e-6
    attn_bias: bool = True
    map_head: bool = False
    remat: str = "none"
    attention_impl: str = "auto"

    def __post_init__(self):
        for name in ("hidden", "layers", "heads", "mlp", "patch", "image_size", "channels"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ValueError(f"ViTConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        if self.hidden % self.heads:
            raise ValueError(f"ViTConfig.hidden={self.hidden} is not divisible by heads={self.heads}")
        if self.image_size < self.patch:
            raise ValueError(f"ViTConfig.image_size={self.image_size} is smaller than patch={self.patch}")
        choices = {"act": tuple(ACTIVATIONS), "final_norm": FINAL_NORMS, "norm": tuple(NORMS),
                   "remat": tuple(REMAT_POLICIES), "attention_impl": IMPLEMENTATIONS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"ViTConfig.{name}={getattr(self, name)!r} not in {sorted(allowed)}")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def grid(self) -> int:
        """Patches per side at ``image_size``."""
        return self.image_size // self.patch

    @property
    def num_positions(self) -> int:
        """Rows of the position-embedding table: ``grid² (+1 for CLS)``."""
        return self.grid ** 2 + int(self.cls_token)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ViTConfig:
        """Build from a mapping; unknown keys raise (a typo must fail at load time)."""
        refuse_dtype_keys(d, "ViTConfig")
        d = check_keys(cls, d, "ViTConfig")
        return cls(**dict(d))

    def replace(self, **changes) -> ViTConfig:
        """A copy with ``changes`` (unknown keys raise)."""
        return ViTConfig.from_dict({**dataclasses.asdict(self), **changes})


def clip_l14_336(**overrides) -> ViTConfig:
    """CLIP ViT-L/14 at 336 px (``openai/clip-vit-large-patch14-336``, LLaVA-1.5/NeXT, SliME, INF-LLaVA)."""
    return ViTConfig(hidden=1024, layers=24, heads=16, mlp=4096, patch=14, image_size=336, act="quick_gelu",
                     cls_token=True, pre_norm=True, final_norm="cls", patch_bias=False,
                     norm_eps=1e-5).replace(**overrides)


def siglip_so400m_14_384(**overrides) -> ViTConfig:
    """SigLIP So400m/14 at 384 px (``google/siglip-so400m-patch14-384``, LLaVA-OneVision)."""
    return ViTConfig(hidden=1152, layers=27, heads=16, mlp=4304, patch=14, image_size=384, act="gelu_tanh",
                     final_norm="tokens", map_head=True, norm_eps=1e-6).replace(**overrides)


def internvit_300m_448(**overrides) -> ViTConfig:
    """InternViT-300M-448px (InternVL2/2.5-2B…8B vision tower, GSWA's base)."""
    return ViTConfig(hidden=1024, layers=24, heads=16, mlp=4096, patch=14, image_size=448, act="gelu",
                     cls_token=True, final_norm="none", layer_scale=True, norm_eps=1e-6,
                     attn_bias=True).replace(**overrides)
