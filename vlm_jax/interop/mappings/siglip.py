"""SigLIP vision tower (``SiglipVisionModel`` / ``siglip_vision_model``): key table and config table.

No CLS token, patch bias, final LayerNorm on all tokens, optional multi-head attention pooling ``head``
(``torch.nn.MultiheadAttention``: q, k, v packed row-wise in ``in_proj_weight`` / ``in_proj_bias``).
Encoder layers are named as CLIP's.
"""

from __future__ import annotations

from vlm_jax.interop.config_table import ConfigTable, Field
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
from vlm_jax.interop.mappings.clip import LAYERS, encoder_layer
from vlm_jax.interop.mappings.vision_common import vision_fields
from vlm_jax.interop.transforms import leading_unit_axes, patch_conv
from vlm_jax.vision.config import ViTConfig


def keys(cfg: ViTConfig) -> KeyMapping:
    dh = cfg.head_dim
    return table(
        rule("patch_embed/kernel", "embeddings.patch_embedding.weight", patch_conv(cfg.patch, cfg.channels)),
        rule("patch_embed/bias", "embeddings.patch_embedding.bias"),
        rule("pos_embed", "embeddings.position_embedding.weight"),
        norm("final_norm", "post_layernorm"),
        rule("head/probe", "head.probe", leading_unit_axes(2)),
        packed_projections_in(tuple(f"head/attn/{n}" for n in "qkv"), "head.attention.in_proj_weight",
                              "head.attention.in_proj_bias", dh, cfg.hidden),
        projection_out("head/attn/out", "head.attention.out_proj", dh),
        norm("head/norm", "head.layernorm"),
        linear("head/mlp/fc1", "head.mlp.fc1"),
        linear("head/mlp/fc2", "head.mlp.fc2"),
    ) + encoder_layer(cfg).nest("encoder/layers/", LAYERS)


CONFIG = ConfigTable("siglip_vision_model",
                     vision_fields("gelu_pytorch_tanh", 1e-6) + (Field("map_head", "vision_use_head", True),),
                     fixed_ours=dict(final_norm="tokens"))

FAMILY = TowerFamily("siglip", keys, CONFIG)
