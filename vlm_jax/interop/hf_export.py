"""Export a :class:`~vlm_jax.model.VLM` as a transformers 5 ``save_pretrained`` directory.

The inverse of :mod:`vlm_jax.interop.hf_vlm` (LLaVA-1.5 ``llava``, LLaVA-NeXT ``llava_next``, InternVL
``internvl``): ``config.json`` from :mod:`vlm_jax.interop.hf_config_export` and float32 safetensors
with the keys ``LlavaForConditionalGeneration.save_pretrained`` writes (spec/parity.md §1.3):

* ``vision_tower.{embeddings,encoder,pre_layrnorm,post_layernorm,layernorm,head}…`` — kernels ``[in, out]``
  back to ``[out, in]``, attention ``[D, H, Dh]`` / ``[H, Dh, D]`` back to ``[D, D]``, the patch kernel
  ``[p·p·C, D]`` (y, x, c order) back to the conv weight ``[D, C, p, p]``, each stacked ``[L, …]``
  parameter unstacked into ``encoder.layers.{i}…`` (InternVL ``encoder.layer.{i}…``, ``lambda_1/2``);
* ``multi_modal_projector.{layer_norm,linear_1,linear_2}…`` and ``image_newline``;
* ``language_model.model.…`` (Llama / Qwen2 names) and ``language_model.lm_head.weight`` unless the
  embeddings are tied (then no head is written, as transformers does).

Streaming: every tensor is planned with its shape first, then fetched from the (possibly sharded)
device arrays one at a time (per layer for stacked parameters: ``jax.device_get(param[i])``) and
written, so the host never holds more than one tensor. Every parameter of the model must be
exported exactly once (otherwise :class:`~vlm_jax.interop.hf_config_export.NotExportable`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx

from vlm_jax.interop.hf_config_export import (
    NotExportable,
    hf_config,
    infer_family,
    vision_kind,
)
from vlm_jax.interop.hf_vision import _EMBED_KEYS, _LAYER_KEYS
from vlm_jax.interop.safetensors_writer import PlannedTensor, write_safetensors
from vlm_jax.model import VLM
from vlm_jax.projectors import InternVLProjector

DEFAULT_MAX_SHARD_BYTES = 5 * 2 ** 30  # transformers' default max_shard_size ("5GB")


class _Plan:
    """Collects :class:`PlannedTensor` s and the parameters they read (to check none is left out)."""

    def __init__(self):
        self.tensors: list[PlannedTensor] = []
        self.used: set[int] = set()

    def add(self, key: str, var: nnx.Variable, transform: Callable[[Any], Any] = lambda a: a,
            layers: int | None = None) -> None:
        """``key`` ← ``transform(var)``; with ``layers``, ``key.format(i)`` ← ``transform(var[i])`` per layer."""
        self.used.add(id(var))
        value = var.get_value()
        if layers is None:
            self._add(key, lambda: value, value.shape, transform)
            return
        if value.shape[0] != layers:
            raise NotExportable(f"{key}: stacked parameter has {value.shape[0]} layers, config says {layers}")
        for i in range(layers):
            self._add(key.format(i), lambda i=i: value[i], value.shape[1:], transform)

    def _add(self, key: str, get: Callable[[], jax.Array], shape, transform) -> None:
        out = jax.eval_shape(transform, jax.ShapeDtypeStruct(tuple(shape), np.float32)).shape

        def fetch():
            return transform(np.asarray(jax.device_get(get()), np.float32))

        self.tensors.append(PlannedTensor(key, tuple(out), fetch))

    def add_packed(self, key: str, parts: Sequence[tuple[nnx.Variable, Callable[[Any], Any]]]) -> None:
        """``key`` ← the row-wise concatenation of ``transform(var)`` over ``parts`` (SigLIP ``in_proj``)."""
        shapes = []
        for var, transform in parts:
            self.used.add(id(var))
            shapes.append(jax.eval_shape(transform, jax.ShapeDtypeStruct(var.get_value().shape, np.float32)).shape)
        shape = (sum(s[0] for s in shapes),) + tuple(shapes[0][1:])

        def fetch():
            return np.concatenate([t(np.asarray(jax.device_get(v.get_value()), np.float32)) for v, t in parts])

        self.tensors.append(PlannedTensor(key, shape, fetch))

    def add_norm(self, key: str, norm, layers: int | None = None) -> None:
        self.add(key + ".weight", norm.scale, layers=layers)
        if getattr(norm, "bias", None) is not None:
            self.add(key + ".bias", norm.bias, layers=layers)

    def add_dense(self, key: str, dense, layers: int | None = None) -> None:
        """``nn.Linear``: kernel ``[in, out]`` → weight ``[out, in]``."""
        self.add(key + ".weight", dense.kernel, lambda w: w.T, layers)
        if dense.bias is not None:
            self.add(key + ".bias", dense.bias, layers=layers)


def _heads_in(w):
    """``[D, H, Dh]`` → ``[H·Dh, D]`` (q / k / v projection weight)."""
    return w.reshape(w.shape[0], -1).T


def _heads_out(w):
    """``[H, Dh, D]`` → ``[D, H·Dh]`` (output projection weight)."""
    return w.reshape(-1, w.shape[-1]).T


def _flat(b):
    return b.reshape(-1)


def _plan_attention(plan: _Plan, attn, keys: Mapping[str, str], layers: int) -> None:
    for name in ("q", "k", "v"):
        proj = getattr(attn, name)
        plan.add(keys[name] + ".weight", proj.kernel, _heads_in, layers)
        if proj.bias is not None:
            plan.add(keys[name] + ".bias", proj.bias, _flat, layers)
    plan.add(keys["out"] + ".weight", attn.out.kernel, _heads_out, layers)
    plan.add(keys["out"] + ".bias", attn.out.bias, layers=layers)
    if attn.q_norm is not None:
        plan.add_norm(keys["q_norm"], attn.q_norm, layers)
        plan.add_norm(keys["k_norm"], attn.k_norm, layers)


def _plan_vision(plan: _Plan, vit, kind: str, prefix: str) -> None:
    cfg, emb, lk = vit.cfg, _EMBED_KEYS[kind], _LAYER_KEYS[kind]
    d, p, c = cfg.hidden, cfg.patch, cfg.channels
    plan.add(prefix + emb["patch"] + ".weight", vit.patch_embed.kernel,
             lambda w: w.reshape(p, p, c, d).transpose(3, 2, 0, 1))
    if vit.patch_embed.bias is not None:
        plan.add(prefix + emb["patch"] + ".bias", vit.patch_embed.bias)
    internvl = kind == "internvl"
    plan.add(prefix + emb["pos"], vit.pos_embed, (lambda a: a[None]) if internvl else (lambda a: a))
    if vit.cls is not None:
        plan.add(prefix + emb["cls"], vit.cls, (lambda a: a.reshape(1, 1, -1)) if internvl else (lambda a: a))
    if vit.pre_norm is not None:
        plan.add_norm(prefix + emb["pre_norm"], vit.pre_norm)
    if vit.final_norm is not None:
        plan.add_norm(prefix + emb["final_norm"], vit.final_norm)
    if vit.head is not None:
        head = vit.head
        plan.add(prefix + "head.probe", head.probe, lambda a: a.reshape(1, 1, -1))
        attn = head.attn
        qkv = [getattr(attn, n) for n in ("q", "k", "v")]
        plan.add_packed(prefix + "head.attention.in_proj_weight", [(proj.kernel, _heads_in) for proj in qkv])
        plan.add_packed(prefix + "head.attention.in_proj_bias", [(proj.bias, _flat) for proj in qkv])
        plan.add(prefix + "head.attention.out_proj.weight", attn.out.kernel, _heads_out)
        plan.add(prefix + "head.attention.out_proj.bias", attn.out.bias)
        plan.add_norm(prefix + "head.layernorm", head.norm)
        plan.add_dense(prefix + "head.mlp.fc1", head.mlp.fc1)
        plan.add_dense(prefix + "head.mlp.fc2", head.mlp.fc2)
    n, layer = cfg.layers, vit.encoder.layers
    keys = {name: prefix + lk["layer"] + key for name, key in lk.items() if name != "layer"}
    _plan_attention(plan, layer.attn, keys, n)
    plan.add_norm(keys["norm1"], layer.norm1, n)
    plan.add_norm(keys["norm2"], layer.norm2, n)
    plan.add_dense(prefix + lk["layer"] + "mlp.fc1", layer.mlp.fc1, n)
    plan.add_dense(prefix + lk["layer"] + "mlp.fc2", layer.mlp.fc2, n)
    if layer.ls1 is not None:
        plan.add(keys["ls1"], layer.ls1, layers=n)
        plan.add(keys["ls2"], layer.ls2, layers=n)


def _plan_decoder(plan: _Plan, decoder, prefix: str) -> None:
    cfg = decoder.cfg
    n, fmt = cfg.num_layers, prefix + "model.layers.{}."
    plan.add(prefix + "model.embed_tokens.weight", decoder.embedder.embedding)
    layers = decoder.layers.layers
    attn = layers.attn
    for proj in ("q", "k", "v"):
        plan.add(fmt + f"self_attn.{proj}_proj.weight", getattr(attn, f"{proj}_kernel"), _heads_in, n)
        if cfg.qkv_bias:
            plan.add(fmt + f"self_attn.{proj}_proj.bias", getattr(attn, f"{proj}_bias"), _flat, n)
    plan.add(fmt + "self_attn.o_proj.weight", attn.o_kernel, _heads_out, n)
    for name in ("gate", "up", "down"):
        plan.add_dense(fmt + f"mlp.{name}_proj", getattr(layers.mlp, name), n)
    plan.add_norm(fmt + "input_layernorm", layers.attn_norm, n)
    plan.add_norm(fmt + "post_attention_layernorm", layers.mlp_norm, n)
    plan.add_norm(prefix + "model.norm", decoder.final_norm)
    if decoder.lm_head is not None:
        plan.add_dense(prefix + "lm_head", decoder.lm_head)


def plan_tensors(model: VLM) -> list[PlannedTensor]:
    """The HF tensors of ``model`` (v5 ``save_pretrained`` keys), each with its shape and a fetch callback.

    Raises :class:`NotExportable` if a parameter of the model has no HF tensor (an unknown module).
    """
    plan = _Plan()
    _plan_vision(plan, model.vision, vision_kind(model.cfg.vision), "vision_tower.")
    projector = model.projector
    if isinstance(projector, InternVLProjector):
        plan.add_norm("multi_modal_projector.layer_norm", projector.layer_norm)
    plan.add_dense("multi_modal_projector.linear_1", projector.linear_1)
    plan.add_dense("multi_modal_projector.linear_2", projector.linear_2)
    if model.image_newline is not None:
        plan.add("image_newline", model.image_newline)
    _plan_decoder(plan, model.llm, "language_model.")
    left = ["/".join(map(str, path)) for path, var in nnx.iter_graph(model)
            if isinstance(var, nnx.Param) and id(var) not in plan.used]
    if left:
        raise NotExportable(f"parameters without an HF tensor: {left[:5]}")
    return plan.tensors


def export_hf(model: VLM, out_dir: str, *, family: str | None = None,
              image_grid_pinpoints: Sequence[Sequence[int]] | None = None,
              extra_config: Mapping[str, Any] | None = None,
              max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> list[str]:
    """Write ``model`` to ``out_dir`` as a transformers ``family`` checkpoint (float32); returns the file names.

    Args:
      model: a concrete :class:`VLM` (parameters may be sharded over devices).
      family: ``"llava"`` | ``"llava_next"`` | ``"internvl"``; inferred from the config when None.
      image_grid_pinpoints: LLaVA-NeXT ``[[H, W], …]``; default: the 1.6 list scaled to the tower's size.
      extra_config: extra top-level ``config.json`` entries (checked like the rest).
      max_shard_bytes: above this many bytes the weights are split into ``model-0000i-of-0000n`` files
        with a ``model.safetensors.index.json``.

    Raises :class:`NotExportable` for models with stages that transformers lacks (GSWA, SliceRestore,
    Self-Mining, DEM, SliME) or settings its config cannot express.
    """
    family = infer_family(model.cfg) if family is None else family
    config = hf_config(model.cfg, family, image_grid_pinpoints=image_grid_pinpoints, extra_config=extra_config)
    tensors = plan_tensors(model)
    files = write_safetensors(tensors, out_dir, max_shard_bytes)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    return files + ["config.json"]
