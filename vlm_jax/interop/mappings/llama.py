"""Llama decoder (``LlamaForCausalLM`` / ``llama``; Vicuna, Llama-3): key table and config table.

Keys relative to the causal LM (``language_model.`` inside a VLM): ``model.embed_tokens``,
``model.layers.{i}.self_attn.{q,k,v,o}_proj``, ``model.layers.{i}.mlp.{gate,up,down}_proj``, the two RMSNorms
per layer, ``model.norm``, ``lm_head`` (absent when tied; a stored copy must equal the embedding). Old
checkpoints store the recomputed RoPE frequencies ``rotary_emb.inv_freq``, which are dropped.
"""

from __future__ import annotations

from vlm_jax.interop.config_table import ConfigTable, Refusal
from vlm_jax.interop.family import TowerFamily
from vlm_jax.interop.key_mapping import KeyMapping, rule, table
from vlm_jax.interop.mappings.decoder_common import DECODER_FIELDS, DECODER_FIXED_HF, DECODER_REFUSALS, ROPE
from vlm_jax.interop.transforms import LINEAR, heads_in, heads_out
from vlm_jax.lm.config import LMConfig

LAYERS = "model.layers.{i}."
SCANNED = "layers/layers/"  # our scanned decoder layers


def keys(cfg: LMConfig) -> KeyMapping:
    dh = cfg.head_dim
    layer = table(*(rule(f"attn/{n}_kernel", f"self_attn.{n}_proj.weight", heads_in(dh)) for n in "qkv"),
                  rule("attn/o_kernel", "self_attn.o_proj.weight", heads_out(dh)),
                  *(rule(f"mlp/{n}/kernel", f"mlp.{n}_proj.weight", LINEAR) for n in ("gate", "up", "down")),
                  rule("attn_norm/scale", "input_layernorm.weight"),
                  rule("mlp_norm/scale", "post_attention_layernorm.weight"))
    return table(rule("embedder/embedding", "model.embed_tokens.weight"),
                 rule("final_norm/scale", "model.norm.weight"),
                 rule("lm_head/kernel", "lm_head.weight", LINEAR),
                 ignored=(r".*\.rotary_emb\.inv_freq",),
                 tied=(("lm_head.weight", "model.embed_tokens.weight"),)) + layer.nest(SCANNED, LAYERS)


CONFIG = ConfigTable(
    "llama", DECODER_FIELDS + (ROPE,), fixed_ours=dict(qkv_bias=False),
    fixed_hf=dict(DECODER_FIXED_HF, attention_bias=False, mlp_bias=False),
    refused=DECODER_REFUSALS + (Refusal("attention_bias", False, lambda bias: not bias,
                                        "Llama attention_bias=True (also biases o_proj) is not supported"),))

FAMILY = TowerFamily("llama", keys, CONFIG)
