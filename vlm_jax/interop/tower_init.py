"""Start a VLM from a separate vision-tower directory and LLM directory, as the papers do (CLIP-L/336 + a Llama
LLM + a fresh projector: INF-LLaVA spec/methods.md §5.3, SliME §6.5, HiRes-LLaVA §4).

:func:`init_towers` loads the towers into an initialised model and leaves everything else (projector, the papers'
modules, ``image_newline``) at its initialisation. A combined VLM directory goes through
:func:`vlm_jax.interop.hf_vlm.load_base_weights` instead, whose projector is loaded only on request when the
model's projector differs.

Accepted directories (``config.json`` + safetensors, key and config tables of :mod:`vlm_jax.interop.mappings`):

* vision: a standalone tower (``CLIPVisionModel``, ``SiglipVisionModel``, InternViT's ``intern_vit_6b``,
  transformers' ``internvl_vision``) or a dual encoder (``CLIPModel`` / ``SiglipModel``, such as
  ``openai/clip-vit-large-patch14-336``: its text tower is read past);
* LLM: a causal LM of a decoder family (``llama``, ``qwen2``, ``internlm2``).

The checkpoint's config must describe the model's tower: every field the family's config table reads is compared
with the model's (``max_seq_len`` aside, a run may train shorter), and a difference raises naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flax import nnx

from vlm_jax.interop.apply_mapping import load_mapped
from vlm_jax.interop.checkpoint_io import TensorSource, read_hf_config
from vlm_jax.interop.errors import CheckpointError
from vlm_jax.interop.family import TowerFamily
from vlm_jax.interop.key_mapping import table
from vlm_jax.interop.mappings.towers import DECODERS, VISION, by_model_type

# dual encoders: their vision config's model_type and the tensors of the text side (read past)
DUAL_ENCODERS = {"clip": "clip_vision_model", "siglip": "siglip_vision_model"}
TEXT_SIDE = (r"text_model\..*", r"text_projection\.weight", r"visual_projection\.weight", "logit_scale", "logit_bias")
FREE_FIELDS = ("max_seq_len",)  # a run may use a shorter context than the checkpoint's


def _check_matches(what: str, path: str, expected: Mapping[str, Any], ours: Any) -> None:
    """Raise naming every field where our tower config ``ours`` differs from the checkpoint's ``expected``."""
    differ = {k: (getattr(ours, k), v) for k, v in expected.items() if k not in FREE_FIELDS and getattr(ours, k) != v}
    if differ:
        detail = ", ".join(f"{k}: model {a!r} vs checkpoint {b!r}" for k, (a, b) in sorted(differ.items()))
        raise CheckpointError(f"the {what} checkpoint {path} does not describe the model's {what} tower ({detail})")


def vision_family_of(hf_config: Mapping[str, Any]) -> tuple[TowerFamily, dict[str, Any], tuple[str, ...]]:
    """The family, the vision config dict and the text-side keys to read past of a vision directory's config."""
    model_type = hf_config.get("model_type")
    if model_type in DUAL_ENCODERS:
        vision = dict(hf_config.get("vision_config") or {}, model_type=DUAL_ENCODERS[model_type])
        return by_model_type(VISION, vision["model_type"], "vision tower"), vision, TEXT_SIDE
    if "vision_config" in hf_config or "text_config" in hf_config:
        raise ValueError(f"{model_type!r} is a whole VLM, not a vision tower: start from it with load_base_weights")
    return by_model_type(VISION, model_type, "vision tower"), dict(hf_config), ()


def load_vision_tower(model: nnx.Module, path: str) -> None:
    """Fill ``model.vision`` from the vision directory ``path`` (module docstring)."""
    family, hf_vision, text_side = vision_family_of(read_hf_config(path))
    _check_matches("vision", path, family.config.to_ours(hf_vision), model.cfg.vision)
    load_mapped(model.vision, TensorSource.open(path), family.keys(model.cfg.vision) + table(ignored=text_side))


def load_llm(model: nnx.Module, path: str) -> None:
    """Fill ``model.llm`` from the causal-LM directory ``path`` (module docstring)."""
    hf_config = read_hf_config(path)
    family = by_model_type(DECODERS, hf_config.get("model_type"), "decoder")
    _check_matches("LLM", path, family.config.to_ours(hf_config), model.cfg.llm)
    load_mapped(model.llm, TensorSource.open(path), family.keys(model.cfg.llm))


def init_towers(model: nnx.Module, *, vision_dir: str | None = None, llm_dir: str | None = None) -> list[str]:
    """Load the vision tower from ``vision_dir`` and the LLM from ``llm_dir`` (either may be omitted) into an
    initialised :class:`~vlm_jax.model.VLM`; every other parameter keeps its initialisation.

    Returns the towers loaded (``["vision_tower", "language_model"]`` for both). Raises
    :class:`~vlm_jax.interop.errors.CheckpointError` naming the field or tensor when a directory does not fit.
    """
    if not (vision_dir or llm_dir):
        raise ValueError("init_towers needs a vision_dir, an llm_dir or both")
    loaded = []
    if vision_dir:
        load_vision_tower(model, vision_dir)
        loaded.append("vision_tower")
    if llm_dir:
        load_llm(model, llm_dir)
        loaded.append("language_model")
    return loaded
