"""Qwen2 decoder (``Qwen2ForCausalLM`` / ``qwen2``): Llama's key table plus q / k / v biases; no sliding window."""

from __future__ import annotations

from vlm_jax.interop.config_table import ConfigTable, Refusal
from vlm_jax.interop.family import TowerFamily
from vlm_jax.interop.key_mapping import KeyMapping, rule, table
from vlm_jax.interop.mappings import llama
from vlm_jax.interop.mappings.decoder_common import DECODER_FIELDS, DECODER_FIXED_HF, DECODER_REFUSALS, ROPE
from vlm_jax.interop.transforms import head_bias
from vlm_jax.lm.config import LMConfig


def keys(cfg: LMConfig) -> KeyMapping:
    biases = table(*(rule(f"attn/{n}_bias", f"self_attn.{n}_proj.bias", head_bias(cfg.head_dim)) for n in "qkv"))
    return llama.keys(cfg) + biases.nest(llama.SCANNED, llama.LAYERS)


CONFIG = ConfigTable(
    "qwen2", DECODER_FIELDS + (ROPE,), fixed_ours=dict(qkv_bias=True),
    fixed_hf=dict(DECODER_FIXED_HF, use_sliding_window=False),
    refused=DECODER_REFUSALS + (Refusal("use_sliding_window", False, lambda on: not on,
                                        "Qwen2 sliding-window attention is not supported"),))

FAMILY = TowerFamily("qwen2", keys, CONFIG)
