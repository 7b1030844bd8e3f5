"""CLIP vision tower (``CLIPVisionModel`` / ``clip_vision_model``): key table and config table.

Keys relative to the vision model (``vision_tower.`` inside a VLM). Our ViT: CLS token (row 0 of the
position table), ``pre_layrnorm``, final LayerNorm on the pooled CLS only, no patch bias.
"""

from __future__ import annotations

from vlm_jax.interop.config_table import ConfigTable
from vlm_jax.interop.family import TowerFamily
from vlm_jax.interop.key_mapping import KeyMapping, linear, norm, projection_in, projection_out, rule, table
from vlm_jax.interop.mappings.vision_common import vision_fields
from vlm_jax.interop.transforms import patch_conv
from vlm_jax.vision.config import ViTConfig

LAYERS = "encoder.layers.{i}."


def encoder_layer(cfg: ViTConfig) -> KeyMapping:
    """One encoder layer (CLIP and SigLIP name it alike), relative to ``encoder/layers`` / ``encoder.layers.{i}``."""
    return table(*(projection_in(f"attn/{n}", f"self_attn.{n}_proj", cfg.head_dim) for n in "qkv"),
                 projection_out("attn/out", "self_attn.out_proj", cfg.head_dim),
                 norm("norm1", "layer_norm1"), norm("norm2", "layer_norm2"),
                 linear("mlp/fc1", "mlp.fc1"), linear("mlp/fc2", "mlp.fc2"))


def keys(cfg: ViTConfig) -> KeyMapping:
    return table(
        rule("patch_embed/kernel", "embeddings.patch_embedding.weight", patch_conv(cfg.patch, cfg.channels)),
        rule("pos_embed", "embeddings.position_embedding.weight"),
        rule("cls", "embeddings.class_embedding"),
        norm("pre_norm", "pre_layrnorm"),
        norm("final_norm", "post_layernorm"),
    ) + encoder_layer(cfg).nest("encoder/layers/", LAYERS)


CONFIG = ConfigTable("clip_vision_model", vision_fields("quick_gelu", 1e-5),
                     fixed_ours=dict(cls_token=True, pre_norm=True, final_norm="cls", patch_bias=False))

FAMILY = TowerFamily("clip", keys, CONFIG, marker="pre_layrnorm.weight")
