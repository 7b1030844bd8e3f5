"""Named templates exported as Jinja (``vlm_jax.interop.chat_template_export``): transformers'
``apply_chat_template`` with the exported template and tokenizer gives our ``tokenize_conversation`` ids.

The tokenizer is the embedded default exported as a bare SentencePiece ``LlamaTokenizer``
(``vlm_jax.interop.tokenizer_export``) and loaded by ``AutoTokenizer``. Generation prompts (what ``generate``
feeds) match for every template; whole conversations for the templates whose segment boundaries are specials.
"""

import os

import pytest
import transformers as T

from vlm_jax.data.templates import TEMPLATES, tokenize_conversation
from vlm_jax.data.tokenizer import default_tokenizer
from vlm_jax.interop.chat_template_export import named_chat_template
from vlm_jax.interop.tokenizer_export import tokenizer_files

ROLES = {"human": "user", "gpt": "assistant", "system": "system"}
PROMPT = [{"from": "human", "value": "<image>\nWhat is at the top left?"}]
DIALOGUE = [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "<image>\nWhat is there?"},
            {"from": "gpt", "value": "a blue square"}, {"from": "human", "value": "And below it?"},
            {"from": "gpt", "value": "nothing"}]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    """(our default tokenizer, transformers' AutoTokenizer of its export)."""
    root = tmp_path_factory.mktemp("chat_template")
    ours = default_tokenizer(str(root / "cache"))
    out = root / "export"
    out.mkdir()
    for name, content in tokenizer_files(ours.model_path, ours, None).items():
        (out / name).write_bytes(content)
    assert sorted(os.listdir(out)) == ["tokenizer.model", "tokenizer_config.json"]
    return ours, T.AutoTokenizer.from_pretrained(str(out))


def _hf_ids(hf, template: str, conversation: list[dict], *, list_content: bool = False) -> list[int]:
    messages = [{"role": ROLES[t["from"]], "content": t["value"]} for t in conversation]
    if list_content:  # transformers' multimodal form of the first human turn
        first = next(m for m in messages if m["role"] == "user")
        first["content"] = [{"type": "image"}, {"type": "text", "text": first["content"].split("\n", 1)[1]}]
    return hf.apply_chat_template(messages, tokenize=True, return_dict=False,
                                  add_generation_prompt=conversation[-1]["from"] == "human",
                                  chat_template=named_chat_template(TEMPLATES[template]))


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_generation_prompt_ids_equal_ours(template, tokenizers):
    ours, hf = tokenizers
    expected = tokenize_conversation(ours, template, PROMPT, 1).tokens.tolist()
    assert _hf_ids(hf, template, PROMPT) == expected
    assert _hf_ids(hf, template, PROMPT, list_content=True) == expected


@pytest.mark.parametrize("template", ["chatml", "llama3"])
def test_dialogue_ids_equal_ours(template, tokenizers):
    ours, hf = tokenizers
    expected = tokenize_conversation(ours, template, DIALOGUE, 1, add_eos=False).tokens.tolist()
    assert _hf_ids(hf, template, DIALOGUE) == expected
    assert _hf_ids(hf, template, DIALOGUE[1:]) != expected  # the system message is rendered, not ignored
