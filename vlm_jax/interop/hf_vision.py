"""Import Hugging Face CLIP / SigLIP / InternVL vision towers into :class:`vlm_jax.vision.vit.ViT`.

Key names are those of ``CLIPVisionModel``, ``SiglipVisionModel`` and ``InternVLVisionModel``
(transformers 5, spec/parity.md §1.3), relative to the vision model: the caller passes a
:class:`TensorSource` view (``source.sub("vision_tower.")`` inside a VLM checkpoint). Every tensor's
shape is checked against the config before conversion, so a wrong checkpoint fails with the
tensor's name; :meth:`TensorSource.check_all_used` then rejects tensors the model did not take.

Layouts: ``nn.Linear`` weights are ``[out, in]`` (transposed; attention projections are split into
``[D, H, Dh]`` / ``[H, Dh, D]``), patch convolutions ``[D, C, p, p]`` become the ``[p·p·C, D]``
kernel of :func:`vlm_jax.vision.vit.patchify`'s (y, x, c) order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx

from vlm_jax.interop.checkpoint_io import CheckpointError, TensorSource, assign
from vlm_jax.vision.config import ViTConfig
from vlm_jax.vision.vit import ViT

KINDS = ("clip", "siglip", "internvl")

_ACTS = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh"}

_LAYER_KEYS = {
    "clip": dict(layer="encoder.layers.{}.", q="self_attn.q_proj", k="self_attn.k_proj", v="self_attn.v_proj",
                 out="self_attn.out_proj", norm1="layer_norm1", norm2="layer_norm2"),
    "internvl": dict(layer="encoder.layer.{}.", q="attention.q_proj", k="attention.k_proj", v="attention.v_proj",
                     out="attention.projection_layer", q_norm="attention.q_norm", k_norm="attention.k_norm",
                     norm1="layernorm_before", norm2="layernorm_after", ls1="lambda_1", ls2="lambda_2"),
}
_LAYER_KEYS["siglip"] = _LAYER_KEYS["clip"]

_EMBED_KEYS = {
    "clip": dict(patch="embeddings.patch_embedding", pos="embeddings.position_embedding.weight",
                 cls="embeddings.class_embedding", pre_norm="pre_layrnorm", final_norm="post_layernorm"),
    "siglip": dict(patch="embeddings.patch_embedding", pos="embeddings.position_embedding.weight",
                   final_norm="post_layernorm"),
    "internvl": dict(patch="embeddings.patch_embeddings.projection", pos="embeddings.position_embeddings",
                     cls="embeddings.cls_token", final_norm="layernorm"),
}

# Tensors we legitimately drop: InternVL's ``mask_token`` exists only for masked-image-modelling
# pre-training (``use_mask_token``) and is unused by a forward pass without ``bool_masked_pos``.
_IGNORED = {"clip": (), "siglip": (), "internvl": ("embeddings.mask_token",)}


def _square(value, name: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(f"only square {name} is supported, got {value}")
        value = value[0]
    return int(value)


def vit_config_from_hf(hf_config: Mapping[str, Any], kind: str, **overrides) -> ViTConfig:
    """:class:`ViTConfig` from an HF vision config dict (``config.json``; a VLM config's
    ``vision_config`` is used when present). ``overrides`` set our own fields (remat, attention_impl, …)."""
    if kind not in KINDS:
        raise ValueError(f"unknown vision tower kind {kind!r}; known: {KINDS}")
    d = dict(hf_config.get("vision_config") or hf_config)
    act = d.get("hidden_act", {"clip": "quick_gelu", "siglip": "gelu_pytorch_tanh", "internvl": "gelu"}[kind])
    if act not in _ACTS:
        raise ValueError(f"unsupported HF hidden_act {act!r}; known: {sorted(_ACTS)}")
    common = dict(hidden=d["hidden_size"], layers=d["num_hidden_layers"], heads=d["num_attention_heads"],
                  mlp=d["intermediate_size"], patch=_square(d["patch_size"], "patch_size"),
                  image_size=_square(d["image_size"], "image_size"), channels=d.get("num_channels", 3),
                  act=_ACTS[act])
    if kind == "clip":
        family = dict(cls_token=True, pre_norm=True, final_norm="cls", patch_bias=False,
                      norm_eps=d.get("layer_norm_eps", 1e-5))
    elif kind == "siglip":
        family = dict(final_norm="tokens", map_head=d.get("vision_use_head", True),
                      norm_eps=d.get("layer_norm_eps", 1e-6))
    else:
        if not d.get("use_absolute_position_embeddings", True):
            raise ValueError("InternVL vision configs without absolute position embeddings are not supported")
        norm_type = d.get("norm_type", "layer_norm")
        if norm_type not in ("layer_norm", "rms_norm"):
            raise ValueError(f"unsupported InternVL norm_type {norm_type!r}")
        family = dict(cls_token=True, final_norm="none" if d.get("use_mean_pooling", True) else "tokens",
                      layer_scale=True, qk_norm=d.get("use_qk_norm", False), norm=norm_type.split("_")[0],
                      norm_eps=d.get("layer_norm_eps", 1e-6), attn_bias=d.get("attention_bias", False))
    return ViTConfig.from_dict({**common, **family, **overrides})


def _load(var: nnx.Variable, source: TensorSource, key: str, raw_shape: tuple[int, ...],
          transform: Callable[[np.ndarray], np.ndarray] = lambda a: a, layers: int | None = None) -> None:
    """Check the HF shape of ``key`` (each layer's, for a ``{}`` format with ``layers``), convert, assign."""
    keys = [key] if layers is None else [key.format(i) for i in range(layers)]
    for k in keys:
        if source.shape(k) != tuple(raw_shape):
            raise CheckpointError(f"{k}: checkpoint shape {source.shape(k)} != expected {tuple(raw_shape)}")
    value = transform(source.get(key)) if layers is None else source.stacked(key, layers, transform)
    assign(var, value, key)


def _load_norm(norm, source: TensorSource, key: str, d: int, layers: int | None = None) -> None:
    _load(norm.scale, source, key + ".weight", (d,), layers=layers)
    if getattr(norm, "bias", None) is not None:
        _load(norm.bias, source, key + ".bias", (d,), layers=layers)


def _load_attention(attn, source: TensorSource, keys: Mapping[str, str], cfg: ViTConfig,
                    layers: int | None = None) -> None:
    d, h, k = cfg.hidden, cfg.heads, cfg.head_dim
    for name in ("q", "k", "v"):
        proj = getattr(attn, name)
        _load(proj.kernel, source, keys[name] + ".weight", (d, d), lambda w: w.T.reshape(d, h, k), layers)
        if proj.bias is not None:
            _load(proj.bias, source, keys[name] + ".bias", (d,), lambda b: b.reshape(h, k), layers)
    _load(attn.out.kernel, source, keys["out"] + ".weight", (d, d), lambda w: w.T.reshape(h, k, d), layers)
    _load(attn.out.bias, source, keys["out"] + ".bias", (d,), layers=layers)
    if attn.q_norm is not None:
        _load_norm(attn.q_norm, source, keys["q_norm"], d, layers)
        _load_norm(attn.k_norm, source, keys["k_norm"], d, layers)


def _load_mlp(mlp, source: TensorSource, key: str, cfg: ViTConfig, layers: int | None = None) -> None:
    d, m = cfg.hidden, cfg.mlp
    _load(mlp.fc1.kernel, source, key + ".fc1.weight", (m, d), lambda w: w.T, layers)
    _load(mlp.fc1.bias, source, key + ".fc1.bias", (m,), layers=layers)
    _load(mlp.fc2.kernel, source, key + ".fc2.weight", (d, m), lambda w: w.T, layers)
    _load(mlp.fc2.bias, source, key + ".fc2.bias", (d,), layers=layers)


def _load_map_head(head, source: TensorSource, cfg: ViTConfig) -> None:
    """SigLIP ``head.*``: ``torch.nn.MultiheadAttention`` packs q, k, v rows in ``in_proj_*``."""
    d, h, k = cfg.hidden, cfg.heads, cfg.head_dim
    _load(head.probe, source, "head.probe", (1, 1, d), lambda p: p.reshape(d))
    for j, name in enumerate(("q", "k", "v")):
        proj = getattr(head.attn, name)
        rows = slice(j * d, (j + 1) * d)
        _load(proj.kernel, source, "head.attention.in_proj_weight", (3 * d, d),
              lambda w, rows=rows: w[rows].T.reshape(d, h, k))
        _load(proj.bias, source, "head.attention.in_proj_bias", (3 * d,), lambda b, rows=rows: b[rows].reshape(h, k))
    _load(head.attn.out.kernel, source, "head.attention.out_proj.weight", (d, d), lambda w: w.T.reshape(h, k, d))
    _load(head.attn.out.bias, source, "head.attention.out_proj.bias", (d,))
    _load_norm(head.norm, source, "head.layernorm", d)
    _load_mlp(head.mlp, source, "head.mlp", cfg)


def detect_kind(source: TensorSource) -> str:
    """The family of the vision tower under ``source`` from its key names."""
    if "encoder.layer.0.layernorm_before.weight" in source:
        return "internvl"
    return "clip" if "embeddings.class_embedding" in source else "siglip"


def load_vit(vit: ViT, source: TensorSource, kind: str | None = None) -> None:
    """Load an HF vision tower of ``kind`` ("clip" | "siglip" | "internvl"; detected from the key
    names when None) into ``vit`` in place.

    ``source`` keys are relative to the vision model (``embeddings…``, ``encoder…``). Raises
    :class:`CheckpointError` naming the tensor on a missing / mis-shaped / unexpected tensor.
    """
    kind = detect_kind(source) if kind is None else kind
    if kind not in KINDS:
        raise ValueError(f"unknown vision tower kind {kind!r}; known: {KINDS}")
    cfg, emb, lk = vit.cfg, _EMBED_KEYS[kind], _LAYER_KEYS[kind]
    d, p, c = cfg.hidden, cfg.patch, cfg.channels
    _load(vit.patch_embed.kernel, source, emb["patch"] + ".weight", (d, c, p, p),
          lambda w: w.transpose(2, 3, 1, 0).reshape(p * p * c, d))
    if vit.patch_embed.bias is not None:
        _load(vit.patch_embed.bias, source, emb["patch"] + ".bias", (d,))
    pos_shape = (1, cfg.num_positions, d) if kind == "internvl" else (cfg.num_positions, d)
    _load(vit.pos_embed, source, emb["pos"], pos_shape, lambda a: a.reshape(cfg.num_positions, d))
    if vit.cls is not None:
        _load(vit.cls, source, emb["cls"], (1, 1, d) if kind == "internvl" else (d,), lambda a: a.reshape(d))
    if vit.pre_norm is not None:
        _load_norm(vit.pre_norm, source, emb["pre_norm"], d)
    if vit.final_norm is not None:
        _load_norm(vit.final_norm, source, emb["final_norm"], d)
    if vit.head is not None:
        _load_map_head(vit.head, source, cfg)

    n, layer = cfg.layers, vit.encoder.layers
    keys = {name: lk["layer"] + key for name, key in lk.items() if name != "layer"}
    _load_attention(layer.attn, source, keys, cfg, n)
    _load_norm(layer.norm1, source, keys["norm1"], d, n)
    _load_norm(layer.norm2, source, keys["norm2"], d, n)
    _load_mlp(layer.mlp, source, lk["layer"] + "mlp", cfg, n)
    if layer.ls1 is not None:
        _load(layer.ls1, source, keys["ls1"], (d,), layers=n)
        _load(layer.ls2, source, keys["ls2"], (d,), layers=n)
    source.check_all_used(ignore=_IGNORED[kind])


def load_vit_from_hf_dir(path: str, kind: str, **overrides) -> ViT:
    """A :class:`ViT` from a ``save_pretrained`` directory (``config.json`` + safetensors).

    A standalone vision model (``CLIPVisionModel`` …) is read at the top level; a VLM directory
    (config with ``vision_config``) is read under ``vision_tower.`` (other towers are not checked).
    """
    with open(os.path.join(path, "config.json")) as f:
        hf_config = json.load(f)
    vit = empty_vit(vit_config_from_hf(hf_config, kind, **overrides))
    source = TensorSource.open(path, vlm="vision_config" in hf_config)
    load_vit(vit, source.sub("vision_tower.") if "vision_config" in hf_config else source, kind)
    unloaded = [".".join(map(str, p)) for p, leaf in jax.tree_util.tree_leaves_with_path(nnx.state(vit))
                if isinstance(leaf, np.ndarray)]
    if unloaded:
        raise CheckpointError(f"parameters not set by the checkpoint: {unloaded[:5]}")
    return vit


def empty_vit(cfg: ViTConfig) -> ViT:
    """A :class:`ViT` whose parameters are host zeros of the right shapes and dtypes, to be filled by
    :func:`load_vit` (no random initialisation, no compilation: creating parameters eagerly compiles
    every initialiser separately)."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: ViT(cfg, rngs=nnx.Rngs(0))))
    return nnx.merge(graphdef, jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), state))
