"""InternViT as transformers implements it (``InternVLVisionModel`` / ``internvl_vision``): key table and
config table.

CLS token ``[1, 1, D]`` and position table ``[1, N, D]``, patch bias, per-channel layer scales
``lambda_1`` / ``lambda_2``, optional qk norm, LayerNorm or RMSNorm, final ``layernorm`` only without mean
pooling. ``embeddings.mask_token`` (masked-image-modelling pre-training only) is dropped.
"""

from __future__ import annotations

from vlm_jax.interop.config_table import ConfigTable, Field, Refusal
from vlm_jax.interop.family import TowerFamily
from vlm_jax.interop.key_mapping import KeyMapping, linear, norm, projection_in, projection_out, rule, table
from vlm_jax.interop.mappings.vision_common import vision_fields
from vlm_jax.interop.transforms import leading_unit_axes, patch_conv
from vlm_jax.vision.config import ViTConfig

PATCH = "embeddings.patch_embeddings.projection"
NORM_TYPES = {"layer_norm": "layer", "rms_norm": "rms"}


def encoder_layer(cfg: ViTConfig) -> KeyMapping:
    dh = cfg.head_dim
    return table(*(projection_in(f"attn/{n}", f"attention.{n}_proj", dh) for n in "qkv"),
                 projection_out("attn/out", "attention.projection_layer", dh),
                 rule("attn/q_norm/scale", "attention.q_norm.weight"),  # RMSNorm over H·Dh
                 rule("attn/k_norm/scale", "attention.k_norm.weight"),
                 norm("norm1", "layernorm_before"), norm("norm2", "layernorm_after"),
                 linear("mlp/fc1", "mlp.fc1"), linear("mlp/fc2", "mlp.fc2"),
                 rule("ls1", "lambda_1"), rule("ls2", "lambda_2"))


def keys(cfg: ViTConfig) -> KeyMapping:
    return table(
        rule("patch_embed/kernel", PATCH + ".weight", patch_conv(cfg.patch, cfg.channels)),
        rule("patch_embed/bias", PATCH + ".bias"),
        rule("pos_embed", "embeddings.position_embeddings", leading_unit_axes(1)),
        rule("cls", "embeddings.cls_token", leading_unit_axes(2)),
        norm("final_norm", "layernorm"),
        ignored=(r"embeddings\.mask_token",),
    ) + encoder_layer(cfg).nest("encoder/layers/", "encoder.layer.{i}.")


CONFIG = ConfigTable(
    "internvl_vision",
    vision_fields("gelu", 1e-6, size_to_hf=lambda s: [s, s]) + (
        Field("attn_bias", "attention_bias", False),
        Field("qk_norm", "use_qk_norm", False),
        Field("norm", "norm_type", "layer_norm", to_ours=NORM_TYPES.__getitem__, to_hf=lambda n: f"{n}_norm"),
        Field("final_norm", "use_mean_pooling", True, to_ours=lambda mean: "none" if mean else "tokens",
              to_hf=lambda final: final == "none")),
    fixed_ours=dict(cls_token=True, layer_scale=True),
    fixed_hf=dict(use_absolute_position_embeddings=True, use_mask_token=False),
    refused=(Refusal("use_absolute_position_embeddings", True, bool,
                     "InternVL vision configs without absolute position embeddings are not supported"),
             Refusal("norm_type", "layer_norm", NORM_TYPES.__contains__, "unsupported InternVL norm_type {value!r}")))

FAMILY = TowerFamily("internvl", keys, CONFIG, marker="encoder.layer.0.layernorm_before.weight")
