"""What a checkpoint family declares: a tower family its key and config tables, a VLM family how it composes
towers, connector and config."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from typing import Any

from vlm_jax.interop.checkpoint_io import canonical_vlm_key
from vlm_jax.interop.config_table import ConfigTable
from vlm_jax.interop.key_mapping import KeyMapping


@dataclasses.dataclass(frozen=True)
class TowerFamily:
    """A vision-tower or decoder checkpoint family: ``name`` is ours (``"clip"``), ``config.model_type`` HF's.

    ``keys(cfg)``: the key table for our tower config ``cfg`` (paths relative to the tower module, HF keys
    relative to the tower's checkpoint prefix). ``config``: the config.json translation. ``marker``: a key
    (relative, as in ``keys``) only this family's layout has, used to recognise a checkpoint.
    """

    name: str
    keys: Callable[[Any], KeyMapping]
    config: ConfigTable
    marker: str | None = None


@dataclasses.dataclass(frozen=True)
class VLMFamily:
    """A whole-VLM checkpoint family (HF ``model_type``): its towers' tables under their prefixes plus its own
    connector table, and its config translation.

    Attributes:
      model_type: HF ``model_type``.
      read_config(hf_config, vision_overrides, llm_overrides): the :class:`~vlm_jax.model_config.VLMConfig`
        fields of a ``config.json`` dict (``image_token_id`` omitted when the config does not record it);
        raises ``ValueError`` for options we do not implement.
      connector_keys(projector_path): the table of the projector (and ``image_newline``); ``projector_path``
        is where our model keeps the projector (``projector``; SliME: ``slime/projector/mlp``).
      write_config(cfg, image_grid_pinpoints): the ``config.json`` dict of ``cfg``; None for an import-only
        family.
      matches(cfg): whether a model with config ``cfg`` exports as this family.
      rename: normalisation of the checkpoint's key names (:class:`~vlm_jax.interop.checkpoint_io.TensorSource`).
      vision_prefix, llm_prefix: the towers' key prefixes.
      vision_family: the vision table by name (``towers.VISION``); None: chosen from the vision config.
      claims(hf_config, tensor_names): whether a checkpoint (``config.json`` dict, its tensors' names as stored) is
        of this family whatever its ``model_type`` says (the original LLaVA layout reuses ``llava``; INF-LLaVA's
        config is an original LLaVA one, only its ``model.spatial_embed.*`` tensors tell); None: recognised by
        ``model_type`` alone.
      module_keys(cfg): the table of the papers' modules an official checkpoint stores (INF-LLaVA's DEM, SliME's
        resamplers and gate) for our VLM config ``cfg``; None: the family stores none.
    """

    model_type: str
    read_config: Callable[..., dict[str, Any]]
    connector_keys: Callable[[str], KeyMapping]
    write_config: Callable[..., dict[str, Any]] | None = None
    matches: Callable[[Any], bool] = lambda cfg: False
    rename: Callable[[str], str] = canonical_vlm_key
    vision_prefix: str = "vision_tower."
    llm_prefix: str = "language_model."
    vision_family: str | None = None
    claims: Callable[[Mapping[str, Any], Collection[str]], bool] | None = None
    module_keys: Callable[[Any], KeyMapping] | None = None
