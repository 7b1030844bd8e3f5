"""``generation_config.json`` of an exported model: the ids ``model.generate`` starts, stops and pads with.

``eos_token_id`` lists every id that ends an answer under the run's chat template
(:func:`~vlm_jax.data.templates.answer_stop_ids`: EOS and the template's end-of-answer token, e.g. Llama-3's
``<|eot_id|>``, ChatML's ``<|im_end|>``), the ids ``vlm-jax generate`` stops at, so transformers' greedy answer
ends where ours does.
"""

from __future__ import annotations

from typing import Any

from vlm_jax.data.templates import answer_stop_ids
from vlm_jax.data.tokenizer import Tokenizer

GENERATION_CONFIG_FILE = "generation_config.json"


def generation_config(tokenizer: Tokenizer, template: str) -> dict[str, Any]:
    """The ``generation_config.json`` dict for ``tokenizer`` under ``template`` (a named or ``"checkpoint"``)."""
    config: dict[str, Any] = dict(eos_token_id=answer_stop_ids(tokenizer, template), pad_token_id=tokenizer.pad_id)
    if tokenizer.bos_id >= 0:
        config["bos_token_id"] = tokenizer.bos_id
    return config
