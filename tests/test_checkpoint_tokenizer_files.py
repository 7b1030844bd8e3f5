"""Loading tokenizers from checkpoint files, the Jinja environment, and the refusals (tests/tokenizer_builders.py)."""

import json
import os
import shutil

import jinja2
import pytest
import transformers
from tokenizer_builders import LLAMA3_TEMPLATE, train_sentencepiece, write_llama3, write_sentencepiece

from vlm_jax.data.chat_template import render_chat
from vlm_jax.data.checkpoint_template import ChatTemplateError, render_conversation
from vlm_jax.data.templates import tokenize_conversation
from vlm_jax.data.tokenizer import MissingImageTokenError, Tokenizer, load_tokenizer

ONE_TURN = [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yes"}]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    return {"llama3": write_llama3(str(root / "llama3")), "model": train_sentencepiece()}


def copy_with_config(source: str, target, **changes) -> str:
    """``source`` copied to ``target`` with tokenizer_config.json entries changed (None: removed)."""
    shutil.copytree(source, target)
    path = os.path.join(target, "tokenizer_config.json")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    config.update(changes)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({k: v for k, v in config.items() if v is not None}, f)
    return str(target)


def test_file_paths_and_bare_models(sources, tmp_path):
    directory = sources["llama3"]
    from_file = load_tokenizer(os.path.join(directory, "tokenizer.json"))  # config files beside it are read
    assert from_file.chat_template == LLAMA3_TEMPLATE and from_file.eos_id == load_tokenizer(directory).eos_id
    model_path = tmp_path / "bare.model"
    model_path.write_bytes(sources["model"])
    bare = load_tokenizer(str(model_path))
    assert isinstance(bare, Tokenizer) and bare.chat_template is None and bare.model_path == str(model_path)
    assert bare.encode("a</s>b") == Tokenizer(str(model_path)).encode("a</s>b")  # SentencePiece's own: text
    assert bare.eos_id not in bare.encode("a</s>b")
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "tokenizer.model").write_bytes(sources["model"])
    assert load_tokenizer(str(alone)).model_path == str(alone / "tokenizer.model")
    assert (bare.bos_id, bare.eos_id, bare.pad_id, bare.vocab_size) == (1, 2, 0, 420)  # no pad piece: <unk>


def test_chat_template_sources(sources, tmp_path):
    directory = copy_with_config(sources["llama3"], tmp_path / "list",
                                 chat_template=[{"name": "tool_use", "template": "x"},
                                                {"name": "default", "template": LLAMA3_TEMPLATE}])
    assert load_tokenizer(directory).chat_template == LLAMA3_TEMPLATE
    (tmp_path / "list" / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    assert load_tokenizer(directory).chat_template == "{{ messages[0]['content'] }}"  # the file wins
    processor = copy_with_config(sources["llama3"], tmp_path / "processor", chat_template=None)
    assert load_tokenizer(processor).chat_template is None
    (tmp_path / "processor" / "chat_template.json").write_text(json.dumps({"chat_template": "{{ bos_token }}"}))
    assert load_tokenizer(processor).chat_template == "{{ bos_token }}"
    no_default = copy_with_config(sources["llama3"], tmp_path / "nodefault",
                                  chat_template=[{"name": "tool_use", "template": "x"}])
    with pytest.raises(ValueError, match="none is named 'default'"):
        load_tokenizer(no_default)


def test_image_token_named_by_the_config(sources, tmp_path):
    directory = write_sentencepiece(str(tmp_path / "vicuna"), sources["model"], "vicuna", image_token="<|im_end|>")
    tok = load_tokenizer(directory)
    assert tok.image_token == "<|im_end|>" and tok.image_token_id == tok.special_ids("<|im_end|>")[0]
    assert load_tokenizer(directory, image_token="<image>").image_token == "<image>"
    missing = load_tokenizer(directory, image_token="<nope>")
    assert not missing.has_image_token
    with pytest.raises(MissingImageTokenError, match=r"<nope>"):
        missing.image_token_id  # noqa: B018


def test_missing_image_token_is_not_a_bad_example(sources):
    """The pipeline skips examples that raise ValueError; a tokenizer without image token must stop the run."""
    tok = load_tokenizer(sources["llama3"])
    conversation = [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "red"}]
    for template in ("checkpoint", "llama3"):
        with pytest.raises(MissingImageTokenError) as error:
            tokenize_conversation(tok, template, conversation, num_image_tokens=4)
        assert not isinstance(error.value, ValueError)


@pytest.mark.parametrize("change, error, message", [
    (dict(tokenizer_class="T5Tokenizer"), ValueError, "tokenizer_class 'T5Tokenizer'"),
    (dict(eos_token=None), ValueError, "no EOS token"),
    (dict(added_tokens_decoder={"9999": {"content": "<new>", "special": True}}), ValueError, "declared with id 9999"),
])
def test_refused_sentencepiece_configs(sources, tmp_path, change, error, message):
    directory = write_sentencepiece(str(tmp_path / "ilm"), sources["model"], "internlm2", **change)
    with pytest.raises(error, match=message):
        load_tokenizer(directory)


def test_refused_files(sources, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_tokenizer(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no tokenizer.json or tokenizer.model"):
        load_tokenizer(str(tmp_path / "empty"))
    tiktoken = tmp_path / "tiktoken"
    tiktoken.mkdir()
    (tiktoken / "tokenizer.model").write_text("IQ== 0\nIg== 1\n")  # Meta's original Llama-3 file format
    with pytest.raises(ValueError, match="not a SentencePiece model"):
        load_tokenizer(str(tiktoken))
    wrong_id = copy_with_config(sources["llama3"], tmp_path / "wrong_id",
                                added_tokens_decoder={"5": {"content": "<|eot_id|>", "special": True}})
    with pytest.raises(ValueError, match="declared with id 5"):
        load_tokenizer(wrong_id)


def test_templates_that_cannot_give_masks_are_refused(sources, tmp_path):
    no_template = load_tokenizer(copy_with_config(sources["llama3"], tmp_path / "none", chat_template=None))
    with pytest.raises(ChatTemplateError, match="no chat template"):
        tokenize_conversation(no_template, "checkpoint", ONE_TURN, 0)
    counting = "{{ messages | length }}{% for m in messages %}[{{ m['content'] }}]{% endfor %}"
    tok = load_tokenizer(copy_with_config(sources["llama3"], tmp_path / "counting", chat_template=counting))
    with pytest.raises(ChatTemplateError, match="not a prefix"):
        tokenize_conversation(tok, "checkpoint", ONE_TURN, 0)
    dropping = "{% for m in messages %}{% if m['role'] == 'user' %}<{{ m['content'] }}>{% endif %}{% endfor %}"
    tok = load_tokenizer(copy_with_config(sources["llama3"], tmp_path / "dropping", chat_template=dropping))
    with pytest.raises(ChatTemplateError, match="answer 1"):
        tokenize_conversation(tok, "checkpoint", ONE_TURN, 0)
    strict = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}ok"
    tok = load_tokenizer(copy_with_config(sources["llama3"], tmp_path / "strict", chat_template=strict))
    with pytest.raises(ValueError, match="rejects the conversation: no system"):  # a bad example: skipped
        tokenize_conversation(tok, "checkpoint", [{"from": "system", "value": "s"}, *ONE_TURN], 0)


def test_add_eos_with_the_checkpoint_template(sources, tmp_path):
    chatml = ("{% for m in messages %}<|start_header_id|>{{ m['role'] }}\n{{ m['content'] }}<|end_header_id|>\n"
              "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant\n{% endif %}")
    tok = load_tokenizer(copy_with_config(sources["llama3"], tmp_path / "eos", chat_template=chatml))
    plain = tokenize_conversation(tok, "checkpoint", ONE_TURN, 0)
    with_eos = tokenize_conversation(tok, "checkpoint", ONE_TURN, 0, add_eos=True)
    assert with_eos.tokens.tolist() == [*plain.tokens.tolist(), tok.eos_id] and with_eos.loss_mask[-1]
    assert tok.decode(plain.tokens[plain.loss_mask]) == "yes<|end_header_id|>"  # "\n" after it: no loss
    assert not plain.loss_mask[-1]


JINJA_FEATURES = (
    "{% set ns = namespace(count=0) %}{% for m in messages %}{% if m['role'] == 'system' %}{% continue %}{% endif %}"
    "{% set ns.count = ns.count + 1 %}{% generation %}{{ m['role'] | upper }}: {{ m['content'] | tojson }}"
    "{% endgeneration %}\n  {% if ns.count > 2 %}{% break %}{% endif %}{% endfor %}"
    "{{ dict(a=1) | tojson }}{{ dict.fromkeys(['x']) | tojson }}{{ bos_token }}{{ eos_token }}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}")


def test_jinja_environment_renders_like_transformers(sources):
    ref = transformers.AutoTokenizer.from_pretrained(sources["llama3"])
    tok = load_tokenizer(sources["llama3"])
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "héllo \"quoted\" <b>"},
                {"role": "assistant", "content": "日本"}, {"role": "user", "content": "x"},
                {"role": "assistant", "content": "never shown"}]
    for gen in (False, True):
        expected = ref.apply_chat_template(messages, chat_template=JINJA_FEATURES, tokenize=False,
                                           add_generation_prompt=gen)
        assert render_chat(JINJA_FEATURES, messages, add_generation_prompt=gen,
                           special_tokens=tok.special_tokens) == expected
    with pytest.raises(jinja2.exceptions.SecurityError):
        render_chat("{% set ns = namespace(_x=1) %}", [], add_generation_prompt=False, special_tokens={})
    with pytest.raises(jinja2.exceptions.SecurityError):
        render_chat("{{ messages.__class__.__subclasses__() }}", [], add_generation_prompt=False, special_tokens={})
    assert render_conversation(tok, ONE_TURN[:1]).endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
