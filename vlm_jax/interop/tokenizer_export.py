"""The tokenizer files of an exported model, so that ``AutoTokenizer`` / ``AutoProcessor`` load the run's tokenizer.

The run's tokenizer (``config.data.tokenizer``, :func:`~vlm_jax.run_config.build_data.build_tokenizer`) is either

* a checkpoint tokenizer (a directory, or a ``tokenizer.json`` with its config files beside it): its files
  (:data:`TOKENIZER_FILES`) are copied unchanged, or
* a bare SentencePiece model (the embedded default, or a config naming a ``tokenizer.model``): it is written as
  ``tokenizer.model`` with a ``tokenizer_config.json`` declaring its control tokens and a ``LlamaTokenizer`` that
  prepends nothing (``add_prefix_space: false``, the models :func:`~vlm_jax.data.tokenizer.train_tokenizer`
  makes have no dummy prefix).

The run's chat template (the tokenizer's own, or a named template rendered by
:mod:`~vlm_jax.interop.chat_template_export`) is written to ``chat_template.jinja``, which both the tokenizer and
the processor read (before any ``chat_template`` of ``tokenizer_config.json``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from vlm_jax.data.tokenizer import Tokenizer
from vlm_jax.data.tokenizer_files import (
    ADDED_TOKENS,
    SENTENCEPIECE_MODEL,
    SPECIAL_TOKENS_MAP,
    TOKENIZER_CONFIG,
    TOKENIZER_JSON,
)

CHAT_TEMPLATE_FILE = "chat_template.jinja"
TOKENIZER_FILES = (TOKENIZER_CONFIG, SPECIAL_TOKENS_MAP, ADDED_TOKENS, TOKENIZER_JSON, SENTENCEPIECE_MODEL,
                   CHAT_TEMPLATE_FILE)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _json_bytes(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True).encode("utf-8")


def _is_bare_model(source: str) -> bool:
    """As :func:`~vlm_jax.data.tokenizer.load_tokenizer`: a non-JSON file, or a directory holding only a model."""
    if os.path.isfile(source):
        return not source.endswith(".json")
    return [os.path.isfile(os.path.join(source, n)) for n in (SENTENCEPIECE_MODEL, TOKENIZER_CONFIG, TOKENIZER_JSON)
            ] == [True, False, False]


def _bare_files(model_path: str, tokenizer: Tokenizer) -> dict[str, bytes]:
    config = dict(tokenizer.special_tokens, tokenizer_class="LlamaTokenizer", add_prefix_space=False, legacy=False,
                  add_bos_token=False, add_eos_token=False, clean_up_tokenization_spaces=False)
    return {SENTENCEPIECE_MODEL: _read(model_path), TOKENIZER_CONFIG: _json_bytes(config)}


def tokenizer_files(source: str, tokenizer: Tokenizer, chat_template: str | None) -> dict[str, bytes]:
    """``{file name: bytes}`` of the tokenizer loaded from ``source`` with the run's ``chat_template`` (module
    docstring); nothing is written."""
    if _is_bare_model(source):
        model = source if os.path.isfile(source) else os.path.join(source, SENTENCEPIECE_MODEL)
        files = _bare_files(model, tokenizer)
    else:
        directory = source if os.path.isdir(source) else os.path.dirname(source)
        files = {name: _read(os.path.join(directory, name)) for name in TOKENIZER_FILES
                 if os.path.isfile(os.path.join(directory, name))}
    if chat_template is not None:
        files[CHAT_TEMPLATE_FILE] = chat_template.encode("utf-8")
    return files
