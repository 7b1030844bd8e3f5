"""Configuration of the decoder LLM (Llama / Vicuna / Llama-3, Qwen2, InternLM2 families).

All three are pre-norm RMSNorm decoders with grouped-query attention, RoPE and a SwiGLU MLP; they
differ only in q/k/v biases (Qwen2), tied embeddings, RoPE base/scaling and checkpoint layout
(InternLM2's fused ``wqkv``, handled by ``vlm_jax.interop.hf_lm``). The presets give the real sizes
of the LLMs used by the four papers (``spec/methods.md``), as recalled from their public
``config.json`` files (no weights or configs can be downloaded here: check them against the real
``config.json`` with ``vlm_jax.interop.hf_lm.lm_config_from_hf`` before training).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from vlm_jax.config_util import check_keys
from vlm_jax.nn.attention import IMPLEMENTATIONS, default_implementation
from vlm_jax.nn.precision import refuse_dtype_keys
from vlm_jax.nn.rope import RopeScaling
from vlm_jax.nn.stack import REMAT_POLICIES


@dataclasses.dataclass(frozen=True)
class LMConfig:
    """Decoder hyper-parameters.

    Attributes:
      vocab_size, hidden_size (D), num_layers, num_heads (H), num_kv_heads (K, ``H % K == 0``),
      head_dim (Dh), mlp_dim (F): model sizes.
      rope_theta, rope_scaling: RoPE base and optional scaling (``vlm_jax.nn.rope``).
      norm_eps: RMSNorm epsilon. qkv_bias: biases on q/k/v (Qwen2). tie_embeddings: logits use the
      embedding table (no separate ``lm_head``).
      remat: layer remat policy (``vlm_jax.nn.stack.REMAT_POLICIES``).
      attention_impl: ``auto`` | ``xla`` | ``cudnn`` | ``splash`` (``vlm_jax.nn.attention``).
      max_seq_len: longest sequence the model is meant for (HF ``max_position_embeddings``).
    """

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    mlp_dim: int
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    norm_eps: float = 1e-6
    qkv_bias: bool = False
    tie_embeddings: bool = False
    remat: str = "none"
    attention_impl: str = "auto"
    max_seq_len: int = 4096

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                     "mlp_dim", "max_seq_len"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ValueError(f"LMConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})")
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"LMConfig.remat={self.remat!r}; known: {sorted(REMAT_POLICIES)}")
        if self.attention_impl not in IMPLEMENTATIONS:
            raise ValueError(f"LMConfig.attention_impl={self.attention_impl!r}; known: {IMPLEMENTATIONS}")
        if self.rope_scaling is not None and not isinstance(self.rope_scaling, RopeScaling):
            raise TypeError("LMConfig.rope_scaling must be a RopeScaling (use LMConfig.from_dict for dicts)")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LMConfig:
        """Build from a plain mapping (e.g. an ml_collections block); unknown keys raise."""
        refuse_dtype_keys(d, "LMConfig")
        d = check_keys(cls, d, "LMConfig")
        if isinstance(d.get("rope_scaling"), Mapping):
            d["rope_scaling"] = RopeScaling(**d["rope_scaling"])
        return cls(**d)

    def replace(self, **changes) -> LMConfig:
        return dataclasses.replace(self, **changes)

    @property
    def resolved_attention_impl(self) -> str:
        return default_implementation() if self.attention_impl == "auto" else self.attention_impl


def vicuna_7b(**overrides) -> LMConfig:
    """Vicuna-7B v1.5 (Llama-2-7B; LLaVA-1.5/NeXT, HiRes-LLaVA, SliME, INF-LLaVA)."""
    return LMConfig(vocab_size=32000, hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=32,
                    head_dim=128, mlp_dim=11008, rope_theta=10000.0, norm_eps=1e-5, max_seq_len=4096,
                    **overrides)


def llama3_8b(**overrides) -> LMConfig:
    """Meta-Llama-3-8B(-Instruct) (SliME / LLaVA-NeXT-Llama3). Llama 3.1 adds ``RopeScaling("llama3", 8.0,
    8192, 1.0, 4.0)`` and ``max_seq_len=131072``."""
    return LMConfig(vocab_size=128256, hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=8,
                    head_dim=128, mlp_dim=14336, rope_theta=500000.0, norm_eps=1e-5, max_seq_len=8192,
                    **overrides)


def qwen2_0_5b(**overrides) -> LMConfig:
    """Qwen2-0.5B(-Instruct): q/k/v biases, tied embeddings."""
    return LMConfig(vocab_size=151936, hidden_size=896, num_layers=24, num_heads=14, num_kv_heads=2,
                    head_dim=64, mlp_dim=4864, rope_theta=1000000.0, norm_eps=1e-6, qkv_bias=True,
                    tie_embeddings=True, max_seq_len=32768, **overrides)


def internlm2_1_8b(**overrides) -> LMConfig:
    """internlm2-chat-1_8b, the LLM of InternVL2-2B (GSWA / SleighVL): dynamic-NTK RoPE, factor 2."""
    return LMConfig(vocab_size=92553, hidden_size=2048, num_layers=24, num_heads=16, num_kv_heads=8,
                    head_dim=128, mlp_dim=8192, rope_theta=1000000.0,
                    rope_scaling=RopeScaling("dynamic", 2.0, original_max_len=32768),
                    norm_eps=1e-5, max_seq_len=32768, **overrides)
