"""The tokenizer files of an exported model, so that ``AutoTokenizer`` / ``AutoProcessor`` load the run's tokenizer.

The run's tokenizer (``config.data.tokenizer``, :func:`~vlm_jax.run_config.build_data.build_tokenizer`) is either

* a checkpoint tokenizer (a directory, or a ``tokenizer.json`` with its config files beside it): its files
  (:data:`TOKENIZER_FILES`) are copied unchanged, or
* a bare SentencePiece model (the embedded default, or a config naming a ``tokenizer.model``;
  :func:`~vlm_jax.data.tokenizer.bare_model_path`): it is written as
  ``tokenizer.model`` with a ``tokenizer_config.json`` declaring its control tokens and a ``LlamaTokenizer`` that
  prepends nothing (``add_prefix_space: false``). Only models without normalisation, whitespace folding or dummy
  prefix (as :func:`~vlm_jax.data.tokenizer.train_tokenizer` makes them) are accepted: SentencePiece's own
  encoding of the others (a leading ``▁`` before user-defined pieces and spaces) has no ``LlamaTokenizer``
  setting, so they are refused.

The run's chat template (the tokenizer's own, or a named template rendered by
:mod:`~vlm_jax.interop.chat_template_export`) is written to ``chat_template.jinja``, which both the tokenizer and
the processor read (before any ``chat_template`` of ``tokenizer_config.json``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from sentencepiece import sentencepiece_model_pb2

from vlm_jax.data.tokenizer import Tokenizer, bare_model_path
from vlm_jax.data.tokenizer_files import (
    ADDED_TOKENS,
    SENTENCEPIECE_MODEL,
    SPECIAL_TOKENS_MAP,
    TOKENIZER_CONFIG,
    TOKENIZER_JSON,
)
from vlm_jax.interop.errors import NotExportable

CHAT_TEMPLATE_FILE = "chat_template.jinja"
TOKENIZER_FILES = (TOKENIZER_CONFIG, SPECIAL_TOKENS_MAP, ADDED_TOKENS, TOKENIZER_JSON, SENTENCEPIECE_MODEL,
                   CHAT_TEMPLATE_FILE)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _json_bytes(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True).encode("utf-8")


def _bare_files(model_path: str, tokenizer: Tokenizer) -> dict[str, bytes]:
    model = _read(model_path)
    normalizer = sentencepiece_model_pb2.ModelProto.FromString(model).normalizer_spec
    if normalizer.name not in ("identity", "") or normalizer.remove_extra_whitespaces or normalizer.add_dummy_prefix:
        raise NotExportable(f"{model_path}: a bare SentencePiece model with normalisation rule {normalizer.name!r}, "
                            f"remove_extra_whitespaces={normalizer.remove_extra_whitespaces}, add_dummy_prefix="
                            f"{normalizer.add_dummy_prefix} encodes differently from any transformers LlamaTokenizer "
                            "(it needs identity, no folding, no dummy prefix); give the run its checkpoint's tokenizer "
                            "directory (config.data.tokenizer)")
    config = dict(tokenizer.special_tokens, tokenizer_class="LlamaTokenizer", legacy=False, add_prefix_space=False,
                  add_bos_token=False, add_eos_token=False, clean_up_tokenization_spaces=False)
    return {SENTENCEPIECE_MODEL: model, TOKENIZER_CONFIG: _json_bytes(config)}


def tokenizer_files(source: str, tokenizer: Tokenizer, chat_template: str | None) -> dict[str, bytes]:
    """``{file name: bytes}`` of the tokenizer loaded from ``source`` with the run's ``chat_template`` (module
    docstring); nothing is written."""
    model = bare_model_path(source)
    if model is not None:
        files = _bare_files(model, tokenizer)
    else:
        directory = source if os.path.isdir(source) else os.path.dirname(source)
        files = {name: _read(os.path.join(directory, name)) for name in TOKENIZER_FILES
                 if os.path.isfile(os.path.join(directory, name))}
    if chat_template is not None:
        files[CHAT_TEMPLATE_FILE] = chat_template.encode("utf-8")
    return files
