"""InternViT in its released layout (``InternVisionModel`` / ``intern_vit_6b`` of OpenGVLab's remote code, the
``vision_model.*`` of ``internvl_chat`` checkpoints such as InternVL2-2B): key table and config table.

Differences from transformers' port (:mod:`.internvit`): ``embeddings.class_embedding [1, 1, D]``,
``embeddings.position_embedding [1, N, D]``, ``embeddings.patch_embedding``; per layer ``attn.qkv`` packs the
q, k, v rows (``reshape(B, N, 3, H, Dh)`` in the reference), ``attn.proj``, ``norm1`` / ``norm2``, ``ls1`` /
``ls2``. No final norm. The qk RMSNorm uses ``layer_norm_eps`` like the layer norms.
"""

from __future__ import annotations

from vlm_jax.interop.config_table import ConfigTable, Field, Refusal
from vlm_jax.interop.family import TowerFamily
from vlm_jax.interop.key_mapping import (
    KeyMapping,
    linear,
    norm,
    packed_projections_in,
    projection_out,
    rule,
    table,
)
from vlm_jax.interop.mappings.internvit import NORM_TYPES
from vlm_jax.interop.mappings.vision_common import vision_fields
from vlm_jax.interop.transforms import leading_unit_axes, patch_conv
from vlm_jax.vision.config import ViTConfig

LAYERS = "encoder.layers.{i}."


def encoder_layer(cfg: ViTConfig) -> KeyMapping:
    qkv = tuple(f"attn/{n}" for n in "qkv")
    return table(packed_projections_in(qkv, "attn.qkv.weight", "attn.qkv.bias", cfg.head_dim, cfg.hidden),
                 projection_out("attn/out", "attn.proj", cfg.head_dim),
                 rule("attn/q_norm/scale", "attn.q_norm.weight"), rule("attn/k_norm/scale", "attn.k_norm.weight"),
                 norm("norm1", "norm1"), norm("norm2", "norm2"),
                 linear("mlp/fc1", "mlp.fc1"), linear("mlp/fc2", "mlp.fc2"),
                 rule("ls1", "ls1"), rule("ls2", "ls2"))


def keys(cfg: ViTConfig) -> KeyMapping:
    return table(
        rule("patch_embed/kernel", "embeddings.patch_embedding.weight", patch_conv(cfg.patch, cfg.channels)),
        rule("patch_embed/bias", "embeddings.patch_embedding.bias"),
        rule("pos_embed", "embeddings.position_embedding", leading_unit_axes(1)),
        rule("cls", "embeddings.class_embedding", leading_unit_axes(2)),
    ) + encoder_layer(cfg).nest("encoder/layers/", LAYERS)


# ``InternVisionConfig`` defaults: qkv_bias False, qk_normalization True, norm_type rms_norm, eps 1e-6, gelu
CONFIG = ConfigTable(
    "intern_vit_6b",
    vision_fields("gelu", 1e-6) + (
        Field("attn_bias", "qkv_bias", False),
        Field("qk_norm", "qk_normalization", True),
        Field("qk_norm_eps", "layer_norm_eps", 1e-6),
        Field("norm", "norm_type", "rms_norm", to_ours=NORM_TYPES.__getitem__, to_hf=lambda n: f"{n}_norm")),
    fixed_ours=dict(cls_token=True, layer_scale=True, final_norm="none", patch_bias=True),
    refused=(Refusal("norm_type", "rms_norm", NORM_TYPES.__contains__, "unsupported InternViT norm_type {value!r}"),))

FAMILY = TowerFamily("intern_vit", keys, CONFIG, marker="encoder.layers.0.attn.qkv.weight")
