"""InternLM2 decoder (remote code of ``internlm/internlm2-chat-1_8b``, the LLM of InternVL2-2B): key table and
config table.

A Llama with renamed tensors and a fused ``attention.wqkv`` (grouped per kv head, see
:func:`vlm_jax.interop.transforms.grouped_qkv`): ``model.tok_embeddings``, ``model.layers.{i}.attention.{wqkv,wo}``,
``model.layers.{i}.feed_forward.{w1,w3,w2}`` (gate, up, down), ``attention_norm`` / ``ffn_norm``,
``model.norm``, ``output``. The remote config keeps transformers 4 RoPE fields (``rope_theta``,
``rope_scaling={"type", "factor"}``).
"""

from __future__ import annotations

from typing import Any

from vlm_jax.interop.config_table import Compound, ConfigTable, Refusal
from vlm_jax.interop.errors import NotExportable
from vlm_jax.interop.family import TowerFamily
from vlm_jax.interop.key_mapping import KeyMapping, rule, table
from vlm_jax.interop.mappings.decoder_common import DECODER_FIELDS, DECODER_FIXED_HF, DECODER_REFUSALS, read_rope
from vlm_jax.interop.mappings.llama import LAYERS, SCANNED
from vlm_jax.interop.transforms import LINEAR, grouped_qkv, heads_out
from vlm_jax.lm.config import LMConfig


def keys(cfg: LMConfig) -> KeyMapping:
    layer = table(rule([f"attn/{n}_kernel" for n in "qkv"], "attention.wqkv.weight",
                       grouped_qkv(cfg.num_heads, cfg.num_kv_heads, cfg.head_dim)),
                  rule("attn/o_kernel", "attention.wo.weight", heads_out(cfg.head_dim)),
                  *(rule(f"mlp/{ours}/kernel", f"feed_forward.{w}.weight", LINEAR)
                    for ours, w in (("gate", "w1"), ("up", "w3"), ("down", "w2"))),
                  rule("attn_norm/scale", "attention_norm.weight"),
                  rule("mlp_norm/scale", "ffn_norm.weight"))
    return table(rule("embedder/embedding", "model.tok_embeddings.weight"),
                 rule("final_norm/scale", "model.norm.weight"),
                 rule("lm_head/kernel", "output.weight", LINEAR),
                 tied=(("output.weight", "model.tok_embeddings.weight"),)) + layer.nest(SCANNED, LAYERS)


def write_rope_v4(lm: LMConfig) -> dict[str, Any]:
    s = lm.rope_scaling
    if s is not None and s.kind not in ("linear", "dynamic"):
        raise NotExportable(f"InternLM2 configs express linear or dynamic RoPE scaling, not {s.kind!r}")
    return dict(rope_theta=lm.rope_theta, rope_scaling=None if s is None else {"type": s.kind, "factor": s.factor})


CONFIG = ConfigTable(
    "internlm2", DECODER_FIELDS + (Compound(read_rope, write_rope_v4),), fixed_ours=dict(qkv_bias=False),
    fixed_hf=dict(DECODER_FIXED_HF, bias=False),
    refused=DECODER_REFUSALS + (Refusal("bias", True, lambda bias: not bias,
                                        "InternLM2 bias=True (biases on wqkv and wo) is not supported"),))

FAMILY = TowerFamily("internlm2", keys, CONFIG, marker="model.tok_embeddings.weight")
