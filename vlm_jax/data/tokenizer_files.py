"""The tokenizer files of a Hugging Face checkpoint directory, read the way transformers 5 reads them.

* ``tokenizer_config.json``: special tokens (``bos_token``, ``eos_token``, ..., plus model-specific ``*_token``
  entries such as ``image_token``), ``additional_special_tokens`` / ``extra_special_tokens``, the added tokens
  (``added_tokens_decoder``), ``tokenizer_class``, ``legacy``, ``add_prefix_space`` and ``chat_template``.
* Only when the config has no ``added_tokens_decoder`` (older checkpoints): ``special_tokens_map.json`` overrides
  the config's special tokens and ``added_tokens.json`` lists the added tokens (special when they are one of the
  special tokens).
* The chat template: ``chat_template.jinja``, else the config's ``chat_template`` (a string, or a list of named
  templates whose ``default`` is used), else ``chat_template.json`` (the processor's, ``{"chat_template": ...}``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

from vlm_jax.data.added_tokens import AddedToken

TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
ADDED_TOKENS = "added_tokens.json"
TOKENIZER_JSON = "tokenizer.json"
SENTENCEPIECE_MODEL = "tokenizer.model"
NAMED_SPECIALS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def _read_json(directory: str, name: str) -> Any:
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _special_tokens(settings: Mapping[str, Any]) -> dict[str, AddedToken]:
    """Named and model-specific special tokens (every ``*_token`` key holding a token, ``add_bos_token`` etc. not)."""
    out = {}
    for key, value in settings.items():
        if key.endswith("_token") and (isinstance(value, str) or isinstance(value, Mapping) and "content" in value):
            out[key] = AddedToken.parse(value, special=True)
    extra = settings.get("extra_special_tokens")
    if isinstance(extra, Mapping):  # transformers 5 form of model-specific tokens: {"image_token": "<image>"}
        out.update({key: AddedToken.parse(value, special=True) for key, value in extra.items()})
    return out


def _extra_special_tokens(settings: Mapping[str, Any]) -> tuple[AddedToken, ...]:
    extra = settings.get("extra_special_tokens") or settings.get("additional_special_tokens") or []
    if isinstance(extra, Mapping):
        return ()
    return tuple(AddedToken.parse(value, special=True) for value in extra)


def _chat_template(directory: str, config: Mapping[str, Any]) -> str | None:
    path = os.path.join(directory, "chat_template.jinja")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return f.read()
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {entry["name"]: entry["template"] for entry in template}
        if "default" not in named:
            raise ValueError(f"{directory}: {TOKENIZER_CONFIG} has chat templates {sorted(named)} but none is "
                             "named 'default'")
        template = named["default"]
    if template is None:
        template = (_read_json(directory, "chat_template.json") or {}).get("chat_template")
    if template is not None and not isinstance(template, str):
        raise ValueError(f"{directory}: chat_template must be a string, got {type(template).__name__}")
    return template


@dataclasses.dataclass(frozen=True)
class TokenizerFiles:
    """What a checkpoint directory says about its tokenizer (module docstring for the rules)."""

    directory: str
    config: Mapping[str, Any]  # tokenizer_config.json as written ({} when absent)
    special_tokens: Mapping[str, AddedToken]  # "bos_token", "eos_token", ..., "image_token" -> token
    extra_special_tokens: tuple[AddedToken, ...]
    added_tokens: tuple[tuple[int, AddedToken], ...]  # (declared id, token), in id order
    chat_template: str | None

    @classmethod
    def read(cls, directory: str) -> TokenizerFiles:
        config = _read_json(directory, TOKENIZER_CONFIG) or {}
        settings = dict(config)
        if "added_tokens_decoder" in config:
            added = {int(i): AddedToken.parse(t) for i, t in config["added_tokens_decoder"].items()}
        else:
            settings.update(_read_json(directory, SPECIAL_TOKENS_MAP) or {})
            specials = {t.content for t in (*_special_tokens(settings).values(), *_extra_special_tokens(settings))}
            added = {int(i): AddedToken(content, special=content in specials, normalized=content not in specials)
                     for content, i in (_read_json(directory, ADDED_TOKENS) or {}).items()}
        return cls(directory, config, _special_tokens(settings), _extra_special_tokens(settings),
                   tuple(sorted(added.items())), _chat_template(directory, config))

    @property
    def tokenizer_class(self) -> str | None:
        return self.config.get("tokenizer_class")

    def has(self, name: str) -> bool:
        return os.path.isfile(os.path.join(self.directory, name))

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)
