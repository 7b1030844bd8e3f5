"""What one checkpoint family of a tower declares: its key table and its config table."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

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
    """A whole-VLM checkpoint family (HF ``model_type``), built from a vision and a decoder family.

    Attributes:
      model_type, architecture: HF ``model_type`` and ``architectures[0]``.
      defaults: HF class defaults of the top-level config fields we read (``vision_model_type`` /
        ``text_model_type``: the tower a config without ``model_type`` in its sub-config has).
      image_token_key: the config field of the image placeholder id.
      connector_keys(projector_path): the table of the projector (and ``image_newline``); ``projector_path``
        is where our model keeps the projector (``projector``; SliME: ``slime/projector/mlp``).
      read(d, vision, act): the family's own :class:`~vlm_jax.model_config.VLMConfig` fields (projector,
        layout, max_views) from the HF config ``d`` (defaults filled), our vision config and projector
        activation; raises ``ValueError`` for options we do not implement.
      write(cfg, pinpoints): the family's own HF config fields.
      matches(cfg): whether a model with config ``cfg`` has this family's structure.
      tie_in_text_config: older checkpoints may store ``tie_word_embeddings`` in ``text_config`` instead.
      vision_prefix, llm_prefix: the towers' key prefixes.
    """

    model_type: str
    architecture: str
    defaults: Mapping[str, Any]
    image_token_key: str
    connector_keys: Callable[[str], KeyMapping]
    read: Callable[..., dict[str, Any]]
    write: Callable[..., dict[str, Any]]
    matches: Callable[[Any], bool]
    tie_in_text_config: bool = False
    vision_prefix: str = "vision_tower."
    llm_prefix: str = "language_model."
