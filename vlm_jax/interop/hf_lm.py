"""Hugging Face import of the decoder LLM: Llama (Vicuna, Llama-3), Qwen2 and InternLM2 checkpoints.

Key names (``TensorSource`` view with the LLM prefix stripped, ``spec/parity.md`` §1.3):

* Llama / Qwen2: ``model.embed_tokens.weight``, ``model.layers.{i}.self_attn.{q,k,v,o}_proj.weight``
  (Qwen2: ``{q,k,v}_proj.bias``), ``model.layers.{i}.mlp.{gate,up,down}_proj.weight``,
  ``model.layers.{i}.{input_layernorm,post_attention_layernorm}.weight``, ``model.norm.weight``,
  ``lm_head.weight`` (absent when tied).
* InternLM2 (remote code of ``internlm/internlm2-chat-1_8b``, used by InternVL2-2B):
  ``model.tok_embeddings.weight``, ``model.layers.{i}.attention.wqkv.weight``,
  ``model.layers.{i}.attention.wo.weight``, ``model.layers.{i}.feed_forward.{w1,w3,w2}.weight``
  (gate, up, down), ``model.layers.{i}.{attention_norm,ffn_norm}.weight``, ``model.norm.weight``,
  ``output.weight``.

InternLM2's fused ``wqkv.weight`` has shape ``[K * (G + 2) * Dh, D]`` with ``G = H / K``. Its output rows
are grouped by kv head: for kv head ``j`` come ``G`` query heads (query heads ``j*G .. j*G+G-1``), then
the key head ``j``, then the value head ``j``, each ``Dh`` rows. (InternLM2 ``modeling_internlm2.py``
splits the projection with ``rearrange(qkv, "b q (h gs d) -> b q h gs d", gs=2 + G)``, takes
``[..., :G, :]`` as queries flattened ``(h gs)``, ``[..., -2, :]`` as keys and ``[..., -1, :]`` as values.)

HF ``nn.Linear`` weights are ``[out, in]``; our kernels are ``[in, out]`` with explicit head axes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import nnx

from vlm_jax.interop.checkpoint_io import CheckpointError, TensorSource, assign, check_all_set
from vlm_jax.lm.config import LMConfig
from vlm_jax.lm.decoder import Decoder
from vlm_jax.nn.rope import RopeScaling

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "internlm2")


def _rope_from_hf(d: Mapping[str, Any]) -> tuple[float, RopeScaling | None]:
    """RoPE base and scaling from transformers 5 ``rope_parameters`` or v4 ``rope_theta`` + ``rope_scaling``."""
    params = dict(d.get("rope_parameters") or d.get("rope_scaling") or {})
    theta = float(params.get("rope_theta", d.get("rope_theta", 10000.0)))
    kind = params.get("rope_type", params.get("type", "default"))
    if params.get("partial_rotary_factor", d.get("partial_rotary_factor", 1.0)) != 1.0:
        raise ValueError("partial rotary embeddings are not supported")
    if kind == "default":
        return theta, None
    if kind not in ("linear", "llama3", "dynamic"):
        raise ValueError(f"unsupported rope scaling type {kind!r} (supported: default, linear, llama3, dynamic)")
    original = params.get("original_max_position_embeddings")
    if kind == "dynamic":  # transformers and InternLM2 scale relative to max_position_embeddings
        original = d["max_position_embeddings"]
    elif kind == "llama3" and original is None:
        original = d["max_position_embeddings"]
    return theta, RopeScaling(kind, float(params["factor"]), original_max_len=original,
                              low_freq_factor=float(params.get("low_freq_factor", 1.0)),
                              high_freq_factor=float(params.get("high_freq_factor", 4.0)))


def lm_config_from_hf(d: Mapping[str, Any], **overrides) -> LMConfig:
    """:class:`LMConfig` from a HF ``config.json`` dict of a ``llama``, ``qwen2`` or ``internlm2`` model.

    Features the decoder does not implement (MLP / output biases, sliding windows, non-SiLU MLPs,
    partial rotary) raise. ``overrides`` set the runtime fields (``remat``, ``attention_impl``, ...).
    """
    model_type = d.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"unsupported model_type {model_type!r}; supported: {SUPPORTED_MODEL_TYPES}")
    if d.get("hidden_act", "silu") != "silu":
        raise ValueError(f"only SiLU-gated MLPs are supported, got hidden_act={d['hidden_act']!r}")
    if d.get("mlp_bias"):
        raise ValueError("MLP biases (mlp_bias=True) are not supported")
    if model_type == "llama" and d.get("attention_bias"):
        raise ValueError("Llama attention_bias=True (also biases o_proj) is not supported")
    if model_type == "internlm2" and d.get("bias", True):
        raise ValueError("InternLM2 bias=True (biases on wqkv and wo) is not supported")
    if model_type == "qwen2" and d.get("use_sliding_window"):
        raise ValueError("Qwen2 sliding-window attention is not supported")
    heads = d["num_attention_heads"]
    theta, scaling = _rope_from_hf(d)
    fields = dict(
        vocab_size=d["vocab_size"], hidden_size=d["hidden_size"], num_layers=d["num_hidden_layers"],
        num_heads=heads, num_kv_heads=d.get("num_key_value_heads") or heads,
        head_dim=d.get("head_dim") or d["hidden_size"] // heads, mlp_dim=d["intermediate_size"],
        rope_theta=theta, rope_scaling=scaling, norm_eps=float(d.get("rms_norm_eps", 1e-6)),
        qkv_bias=model_type == "qwen2", tie_embeddings=bool(d.get("tie_word_embeddings", False)),
        max_seq_len=d.get("max_position_embeddings", 4096))
    fields.update(overrides)
    return LMConfig(**fields)


def _linear(w: np.ndarray) -> np.ndarray:
    """HF ``[out, in]`` → ``[in, out]``."""
    return w.T


def _split_wqkv(w: np.ndarray, cfg: LMConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """InternLM2 ``wqkv [K*(G+2)*Dh, D]`` → q ``[D, H, Dh]``, k, v ``[D, K, Dh]`` (layout in the module doc)."""
    kh, dh, d = cfg.num_kv_heads, cfg.head_dim, cfg.hidden_size
    g = cfg.num_heads // kh
    if w.shape != (kh * (g + 2) * dh, d):
        raise CheckpointError(f"wqkv shape {w.shape} != {(kh * (g + 2) * dh, d)} for H={cfg.num_heads}, K={kh}")
    grouped = w.T.reshape(d, kh, g + 2, dh)
    return grouped[:, :, :g].reshape(d, kh * g, dh), grouped[:, :, g], grouped[:, :, g + 1]


def _load_layers(layers, src: TensorSource, cfg: LMConfig, internlm2: bool) -> None:
    n, d, h, kh, dh = cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    fmt = "model.layers.{}."
    attn = layers.attn
    if internlm2:
        q, k, v = zip(*(_split_wqkv(src.get(f"model.layers.{i}.attention.wqkv.weight"), cfg) for i in range(n)))
        assign(attn.q_kernel, np.stack(q), "attention.wqkv (q)")
        assign(attn.k_kernel, np.stack(k), "attention.wqkv (k)")
        assign(attn.v_kernel, np.stack(v), "attention.wqkv (v)")
        names = dict(o="attention.wo", gate="feed_forward.w1", up="feed_forward.w3", down="feed_forward.w2",
                     attn_norm="attention_norm", mlp_norm="ffn_norm")
    else:
        for proj, heads in (("q", h), ("k", kh), ("v", kh)):
            key = fmt + f"self_attn.{proj}_proj."
            assign(getattr(attn, f"{proj}_kernel"), src.stacked(key + "weight", n, lambda w: w.T.reshape(d, -1, dh)),
                   key + "weight")
            if cfg.qkv_bias:
                assign(getattr(attn, f"{proj}_bias"), src.stacked(key + "bias", n, lambda b: b.reshape(-1, dh)),
                       key + "bias")
        names = dict(o="self_attn.o_proj", gate="mlp.gate_proj", up="mlp.up_proj", down="mlp.down_proj",
                     attn_norm="input_layernorm", mlp_norm="post_attention_layernorm")
    key = fmt + names["o"] + ".weight"
    assign(attn.o_kernel, src.stacked(key, n, lambda w: w.T.reshape(h, dh, d)), key)
    for ours in ("gate", "up", "down"):
        key = fmt + names[ours] + ".weight"
        assign(getattr(layers.mlp, ours).kernel, src.stacked(key, n, _linear), key)
    for ours in ("attn_norm", "mlp_norm"):
        key = fmt + names[ours] + ".weight"
        assign(getattr(layers, ours).scale, src.stacked(key, n), key)


def load_decoder(decoder: Decoder, source: TensorSource) -> Decoder:
    """Fill ``decoder`` (possibly abstract, from ``nnx.eval_shape``) from a HF LLM checkpoint view.

    The family is recognised from the keys (``model.tok_embeddings.weight`` → InternLM2). A tied
    decoder accepts a stored ``lm_head.weight`` only if it equals the embedding. Every tensor must be
    used and every parameter set; otherwise :class:`CheckpointError`.
    """
    cfg = decoder.cfg
    internlm2 = "model.tok_embeddings.weight" in source
    embed_key = "model.tok_embeddings.weight" if internlm2 else "model.embed_tokens.weight"
    head_key = "output.weight" if internlm2 else "lm_head.weight"
    embedding = source.get(embed_key)
    assign(decoder.embedder.embedding, embedding, embed_key)
    _load_layers(decoder.layers.layers, source, cfg, internlm2)
    assign(decoder.final_norm.scale, source.get("model.norm.weight"), "model.norm.weight")
    if decoder.lm_head is not None:
        assign(decoder.lm_head.kernel, _linear(source.get(head_key)), head_key)
    elif head_key in source and not np.array_equal(source.get(head_key), embedding):
        raise CheckpointError(f"config ties the embeddings but {head_key} differs from {embed_key}")
    for key in source.keys():  # old Llama checkpoints store the (recomputed) RoPE frequencies
        if key.endswith("rotary_emb.inv_freq"):
            source.get(key)
    source.check_all_used()
    check_all_set(decoder)
    return decoder


def load_decoder_from_hf_dir(path: str, **overrides) -> Decoder:
    """A :class:`Decoder` from a ``save_pretrained`` directory (``config.json`` + safetensors).

    Parameters are created abstractly and filled from the checkpoint (no random initialisation).
    ``overrides`` go to :func:`lm_config_from_hf` (e.g. ``remat="full"``).
    """
    with open(os.path.join(path, "config.json")) as f:
        cfg = lm_config_from_hf(json.load(f), **overrides)
    decoder = nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0)))
    return load_decoder(decoder, TensorSource.open(path))
