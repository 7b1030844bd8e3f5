"""The config translation the transformers-native VLM families share (``llava``, ``llava_next``, ``internvl``).

Their ``config.json`` has ``vision_config`` / ``text_config`` sub-configs, ``vision_feature_layer``,
``vision_feature_select_strategy`` (``default`` drops the CLS token, ``full`` keeps it),
``projector_hidden_act`` and an image placeholder id; a family adds its own fields through ``read`` /
``write`` (projector kind, layout, tile budget, pinpoints). Export writes transformers 5 field names, as
``save_pretrained`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vlm_jax.interop.config_table import ACT_FROM_HF, ACT_TO_HF, named
from vlm_jax.interop.errors import NotExportable
from vlm_jax.interop.family import VLMFamily
from vlm_jax.interop.key_mapping import KeyMapping
from vlm_jax.interop.mappings.towers import VISION, by_model_type, decoder_family, lm_config, vision_family, vit_config
from vlm_jax.model_config import VLMConfig
from vlm_jax.vision.config import ViTConfig

STRATEGIES = {"default": False, "full": True}  # HF vision_feature_select_strategy → our keep_cls

# read(d, vision, act) -> the family's VLMConfig fields; write(cfg, pinpoints) -> its HF fields
FamilyRead = Callable[[Mapping[str, Any], ViTConfig, str], dict[str, Any]]
FamilyWrite = Callable[[VLMConfig, Sequence[Sequence[int]] | None], dict[str, Any]]


def read_config(defaults: Mapping[str, Any], image_token_key: str, tie_in_text_config: bool, read: FamilyRead,
                hf_config: Mapping[str, Any], vision_overrides: Mapping[str, Any],
                llm_overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`VLMConfig` fields of a transformers VLM config (``defaults``: the HF class defaults of the
    fields read, with the towers' default ``vision_model_type`` / ``text_model_type``)."""
    d = {**defaults, **{k: v for k, v in hf_config.items() if v is not None}}
    layer = d["vision_feature_layer"]
    if not isinstance(layer, int):
        raise ValueError(f"vision_feature_layer={layer!r}: only a single int layer is supported (no concat)")
    strategy = d["vision_feature_select_strategy"]
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown vision_feature_select_strategy {strategy!r}")
    act = named(ACT_FROM_HF, "projector_hidden_act")(d["projector_hidden_act"])

    vision_hf = dict(hf_config.get("vision_config") or {})
    vision_tower = by_model_type(VISION, vision_hf.get("model_type", d["vision_model_type"]), "vision tower")
    if vision_tower is VISION["internvl"] and layer == -1 and not vision_hf.get("use_mean_pooling", True):
        raise ValueError("InternVL with use_mean_pooling=False and vision_feature_layer=-1 feeds the final "
                         "LayerNorm output to the projector; not supported")
    vision = vit_config(vision_tower, vision_hf, **vision_overrides)
    if strategy == "default" and not vision.cls_token:
        raise ValueError(f"vision_feature_select_strategy='default' with a {vision_tower.name} tower (no CLS "
                         "token): HF would drop the first patch token; not supported")

    text_hf = dict(hf_config.get("text_config") or {})
    text_hf.setdefault("model_type", d["text_model_type"])
    tie = bool(d["tie_word_embeddings"])
    if tie_in_text_config:  # older checkpoints stored the flag in the text config
        tie = tie or bool(text_hf.get("tie_word_embeddings", False))
    llm = lm_config(text_hf, **{"tie_embeddings": tie, **llm_overrides})
    return dict(vision=vision, llm=llm, select_layer=layer, keep_cls=STRATEGIES[strategy],
                image_token_id=int(d[image_token_key]), **read(d, vision, act))


def write_config(model_type: str, architecture: str, image_token_key: str, write: FamilyWrite, cfg: VLMConfig,
                 pinpoints: Sequence[Sequence[int]] | None) -> dict[str, Any]:
    """The transformers ``config.json`` dict of ``cfg`` (float32 weights)."""
    strategy = {keep: name for name, keep in STRATEGIES.items()}[cfg.keep_cls]
    return dict(
        model_type=model_type, architectures=[architecture], dtype="float32",
        vision_config=vision_family(cfg.vision).config.to_hf(cfg.vision),
        text_config=decoder_family(cfg.llm).config.to_hf(cfg.llm),
        projector_hidden_act=named(ACT_TO_HF, "projector activation", NotExportable)(cfg.projector.act),
        vision_feature_layer=cfg.select_layer, vision_feature_select_strategy=strategy,
        tie_word_embeddings=cfg.llm.tie_embeddings, image_seq_length=cfg.tokens_per_view,
        **{image_token_key: cfg.image_token_id}, **write(cfg, pinpoints))


def transformers_family(model_type: str, architecture: str, *, defaults: Mapping[str, Any], image_token_key: str,
                        connector_keys: Callable[[str], KeyMapping], read: FamilyRead, write: FamilyWrite,
                        matches: Callable[[VLMConfig], bool], tie_in_text_config: bool = False) -> VLMFamily:
    """A :class:`VLMFamily` with the shared transformers config translation and the family's own parts."""
    def read_family(hf_config, vision_overrides, llm_overrides):
        return read_config(defaults, image_token_key, tie_in_text_config, read, hf_config, vision_overrides,
                           llm_overrides)

    def write_family(cfg, pinpoints):
        return write_config(model_type, architecture, image_token_key, write, cfg, pinpoints)

    return VLMFamily(model_type, read_family, connector_keys, write_family, matches)
