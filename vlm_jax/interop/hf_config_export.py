"""``config.json`` of a transformers ``llava`` / ``llava_next`` / ``internvl`` model from a :class:`VLMConfig`.

The inverse of :func:`vlm_jax.interop.hf_vlm.vlm_config_from_hf` (transformers 5 field names, as
``save_pretrained`` writes them). Every exported config is read back with the importer and must give
the same model (runtime fields such as precision / remat / max_views aside): a model feature the HF
config cannot express (a non-default ``qk_norm_eps``, a CLIP tower without its post-LayerNorm, a
dynamic RoPE whose base length is not ``max_position_embeddings`` …) is refused with the differing
fields named, instead of writing a config that transformers would run differently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from vlm_jax.interop.hf_vlm import vlm_config_from_hf
from vlm_jax.lm.config import LMConfig
from vlm_jax.model_config import STAGES, VLMConfig
from vlm_jax.vision.config import ViTConfig

FAMILIES = {"llava": "LlavaForConditionalGeneration", "llava_next": "LlavaNextForConditionalGeneration",
            "internvl": "InternVLForConditionalGeneration"}
# our activation name → the HF ``hidden_act`` spelling save_pretrained writes
HF_ACT_NAMES = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}
# the LLaVA-NeXT 1.6 ``image_grid_pinpoints`` for a 336 px tower, (H, W)
LLAVA_NEXT_PINPOINTS_336 = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
_VIT_RUNTIME = ("remat", "attention_impl")
_LM_RUNTIME = ("remat", "attention_impl")


class NotExportable(ValueError):
    """The model has parts with no transformers equivalent."""


def infer_family(cfg: VLMConfig) -> str:
    """``internvl`` for the pixel-shuffle projector, ``llava_next`` for the anyres layout, else ``llava``."""
    if cfg.projector.kind == "internvl":
        return "internvl"
    return "llava_next" if cfg.layout == "anyres" else "llava"


def check_exportable(cfg: VLMConfig, family: str) -> None:
    """Raise :class:`NotExportable` for high-res stages (no HF class) or a family that does not fit."""
    if family not in FAMILIES:
        raise ValueError(f"unknown HF family {family!r}; known: {sorted(FAMILIES)}")
    stages = [name for name in STAGES if getattr(cfg, name) is not None]
    if stages:
        raise NotExportable(f"stages {stages} have no transformers equivalent (GSWA, SliceRestore, Self-Mining, "
                            "DEM and SliME exist only in vlm_jax); export a model without them")
    if family != infer_family(cfg):
        raise NotExportable(f"a model with projector {cfg.projector.kind!r} and layout {cfg.layout!r} is "
                            f"{infer_family(cfg)!r}, not {family!r}")


def vision_kind(v: ViTConfig) -> str:
    """The HF tower family of ``v``: ``internvl`` (layer scale), ``clip`` (CLS token) or ``siglip``; the
    read-back check in :func:`hf_config` rejects flags that family cannot express."""
    if v.layer_scale:
        return "internvl"
    return "clip" if v.cls_token else "siglip"


def vision_config(v: ViTConfig) -> dict[str, Any]:
    """HF vision config (``clip_vision_model`` | ``siglip_vision_model`` | ``internvl_vision``), by
    :func:`vision_kind`."""
    if v.act not in HF_ACT_NAMES:
        raise NotExportable(f"vision activation {v.act!r} has no HF name; known: {sorted(HF_ACT_NAMES)}")
    common = dict(hidden_size=v.hidden, intermediate_size=v.mlp, num_hidden_layers=v.layers,
                  num_attention_heads=v.heads, num_channels=v.channels, hidden_act=HF_ACT_NAMES[v.act],
                  layer_norm_eps=v.norm_eps)
    kind = vision_kind(v)
    if kind == "internvl":
        return dict(common, model_type="internvl_vision", image_size=[v.image_size] * 2, patch_size=[v.patch] * 2,
                    attention_bias=v.attn_bias, use_qk_norm=v.qk_norm, norm_type=f"{v.norm}_norm",
                    use_mean_pooling=v.final_norm == "none", use_absolute_position_embeddings=True,
                    use_mask_token=False)
    if kind == "clip":
        return dict(common, model_type="clip_vision_model", image_size=v.image_size, patch_size=v.patch)
    return dict(common, model_type="siglip_vision_model", image_size=v.image_size, patch_size=v.patch,
                vision_use_head=v.map_head)


def _rope_parameters(lm: LMConfig) -> dict[str, Any]:
    """transformers 5 ``rope_parameters`` (the importer maps dynamic scaling to ``max_position_embeddings``)."""
    s = lm.rope_scaling
    if s is None:
        return dict(rope_type="default", rope_theta=lm.rope_theta)
    params = dict(rope_type=s.kind, rope_theta=lm.rope_theta, factor=s.factor)
    if s.kind == "llama3":
        params.update(original_max_position_embeddings=s.original_max_len, low_freq_factor=s.low_freq_factor,
                      high_freq_factor=s.high_freq_factor)
    return params


def text_config(lm: LMConfig) -> dict[str, Any]:
    """HF text config: ``qwen2`` when q/k/v have biases, else ``llama`` (InternLM2 computes exactly as Llama)."""
    common = dict(vocab_size=lm.vocab_size, hidden_size=lm.hidden_size, intermediate_size=lm.mlp_dim,
                  num_hidden_layers=lm.num_layers, num_attention_heads=lm.num_heads,
                  num_key_value_heads=lm.num_kv_heads, head_dim=lm.head_dim, hidden_act="silu",
                  rms_norm_eps=lm.norm_eps, max_position_embeddings=lm.max_seq_len,
                  rope_parameters=_rope_parameters(lm), tie_word_embeddings=lm.tie_embeddings)
    if lm.qkv_bias:
        return dict(common, model_type="qwen2", use_sliding_window=False)
    return dict(common, model_type="llama", attention_bias=False, mlp_bias=False)


def default_pinpoints(image_size: int) -> list[list[int]]:
    """The LLaVA-NeXT 1.6 pinpoints scaled from 336 px to ``image_size`` (``[[t, 2t], [2t, t], [2t, 2t], …]``)."""
    return [[h // 336 * image_size, w // 336 * image_size] for h, w in LLAVA_NEXT_PINPOINTS_336]


def _runtime_free(cfg: VLMConfig) -> dict[str, Any]:
    """The fields an HF config defines: runtime settings and the processor-side tile budget dropped."""
    d = dataclasses.asdict(cfg)
    for name in _VIT_RUNTIME:
        d["vision"].pop(name)
    for name in _LM_RUNTIME:
        d["llm"].pop(name)
    for name in ("max_views", "global_view", "precision"):
        d.pop(name)
    return d


def _differences(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, Mapping) and isinstance(y, Mapping):
            out += _differences(x, y, f"{prefix}{key}.")
        elif x != y:
            out.append(f"{prefix}{key}: model {x!r} vs HF config {y!r}")
    return out


def hf_config(cfg: VLMConfig, family: str, *, image_grid_pinpoints: Sequence[Sequence[int]] | None = None,
              extra_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``config.json`` dict of ``cfg`` as an HF ``family`` model (float32 weights).

    ``image_grid_pinpoints`` (LLaVA-NeXT only; ``[[H, W], …]`` multiples of the tower's image size)
    default to :func:`default_pinpoints`. ``extra_config`` entries are added at the top level last
    (e.g. ``{"bos_token_id": 1}``) and go through the same read-back check.
    """
    check_exportable(cfg, family)
    if image_grid_pinpoints is not None and family != "llava_next":
        raise ValueError("image_grid_pinpoints apply to llava_next only")
    strategy = "full" if cfg.keep_cls else "default"
    if cfg.projector.act not in HF_ACT_NAMES:
        raise NotExportable(f"projector activation {cfg.projector.act!r} has no HF name")
    d: dict[str, Any] = dict(
        model_type=family, architectures=[FAMILIES[family]], dtype="float32",
        vision_config=vision_config(cfg.vision), text_config=text_config(cfg.llm),
        projector_hidden_act=HF_ACT_NAMES[cfg.projector.act], vision_feature_layer=cfg.select_layer,
        vision_feature_select_strategy=strategy, tie_word_embeddings=cfg.llm.tie_embeddings,
        image_seq_length=cfg.tokens_per_view)
    if family == "internvl":
        d.update(image_token_id=cfg.image_token_id, downsample_ratio=cfg.projector.downsample)
    else:
        d.update(image_token_index=cfg.image_token_id, multimodal_projector_bias=True)
    if family == "llava_next":
        pinpoints = image_grid_pinpoints or default_pinpoints(cfg.vision.image_size)
        d["image_grid_pinpoints"] = [[int(h), int(w)] for h, w in pinpoints]
    d.update(extra_config or {})
    back = vlm_config_from_hf(d, max_views=cfg.max_views, global_view=cfg.global_view)
    diff = _differences(_runtime_free(cfg), _runtime_free(back))
    if diff:
        raise NotExportable("the HF config cannot express this model: " + "; ".join(diff))
    return d
