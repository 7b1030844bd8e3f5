"""Config fields every HF decoder family shares (``LlamaConfig``, ``Qwen2Config``, InternLM2's remote
``InternLM2Config``): sizes, RMSNorm epsilon, tied embeddings, RoPE base and scaling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vlm_jax.interop.config_table import Compound, Field, Refusal
from vlm_jax.lm.config import LMConfig
from vlm_jax.nn.rope import RopeScaling

ROPE_KINDS = ("default", "linear", "llama3", "dynamic")


def read_rope(d: Mapping[str, Any]) -> dict[str, Any]:
    """``rope_theta`` / ``rope_scaling`` from transformers 5 ``rope_parameters`` or v4 ``rope_theta`` +
    ``rope_scaling`` (dynamic NTK scales relative to ``max_position_embeddings``, as transformers and InternLM2
    do)."""
    params = dict(d.get("rope_parameters") or d.get("rope_scaling") or {})
    theta = float(params.get("rope_theta", d.get("rope_theta", 10000.0)))
    kind = params.get("rope_type", params.get("type", "default"))
    if params.get("partial_rotary_factor", d.get("partial_rotary_factor", 1.0)) != 1.0:
        raise ValueError("partial rotary embeddings are not supported")
    if kind not in ROPE_KINDS:
        raise ValueError(f"unsupported rope scaling type {kind!r} (supported: {', '.join(ROPE_KINDS)})")
    if kind == "default":
        return dict(rope_theta=theta, rope_scaling=None)
    original = params.get("original_max_position_embeddings")
    if kind == "dynamic" or (kind == "llama3" and original is None):
        original = d["max_position_embeddings"]
    return dict(rope_theta=theta, rope_scaling=RopeScaling(
        kind, float(params["factor"]), original_max_len=original,
        low_freq_factor=float(params.get("low_freq_factor", 1.0)),
        high_freq_factor=float(params.get("high_freq_factor", 4.0))))


def write_rope(lm: LMConfig) -> dict[str, Any]:
    """transformers 5 ``rope_parameters``."""
    s = lm.rope_scaling
    if s is None:
        return dict(rope_parameters=dict(rope_type="default", rope_theta=lm.rope_theta))
    params = dict(rope_type=s.kind, rope_theta=lm.rope_theta, factor=s.factor)
    if s.kind == "llama3":
        params.update(original_max_position_embeddings=s.original_max_len, low_freq_factor=s.low_freq_factor,
                      high_freq_factor=s.high_freq_factor)
    return dict(rope_parameters=params)


DECODER_FIELDS = (
    Field("vocab_size", "vocab_size"), Field("hidden_size", "hidden_size"), Field("num_layers", "num_hidden_layers"),
    Field("num_heads", "num_attention_heads"),
    Field("num_kv_heads", "num_key_value_heads", lambda d: d["num_attention_heads"]),
    Field("head_dim", "head_dim", lambda d: d["hidden_size"] // d["num_attention_heads"]),
    Field("mlp_dim", "intermediate_size"), Field("norm_eps", "rms_norm_eps", 1e-6, to_ours=float),
    Field("tie_embeddings", "tie_word_embeddings", False, to_ours=bool),
    Field("max_seq_len", "max_position_embeddings", 4096),
)
ROPE = Compound(read_rope, write_rope)  # transformers 5 ``rope_parameters`` (reads v4 fields too)

DECODER_REFUSALS = (
    Refusal("hidden_act", "silu", lambda act: act == "silu",
            "only SiLU-gated MLPs are supported, got hidden_act={value!r}"),
    Refusal("mlp_bias", False, lambda bias: not bias, "MLP biases (mlp_bias=True) are not supported"),
)

DECODER_FIXED_HF = dict(hidden_act="silu")
