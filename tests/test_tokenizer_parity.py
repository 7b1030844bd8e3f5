"""Checkpoint tokenizers against transformers: ids, specials and chat templates (tests/tokenizer_builders.py).

References: ``transformers.AutoTokenizer`` for the Llama-3 (``tokenizers`` backend) and the Vicuna-style
(``LlamaTokenizer`` over SentencePiece) checkpoints. InternLM2's tokenizer is remote code that AutoTokenizer
refuses to run; its slow tokenizer is transformers' ``PreTrainedTokenizer`` calling ``sp_model.encode`` on the
text between added tokens, which is transformers' own ``SentencePieceBackend`` with ``legacy=True``: that class
is the reference for the InternLM2-style checkpoint.
"""

import pickle

import pytest
import transformers
from tokenizer_builders import (
    INTERNVL_SYSTEM,
    VICUNA_SYSTEM,
    parity_strings,
    train_sentencepiece,
    write_llama3,
    write_sentencepiece,
)
from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

from vlm_jax.data.checkpoint_template import render_conversation
from vlm_jax.data.templates import answer_stop_ids, tokenize_conversation
from vlm_jax.data.tokenizer import load_tokenizer

ROLES = {"system": "system", "human": "user", "gpt": "assistant"}
CONVERSATIONS = [
    [{"from": "human", "value": "What is at the top-left?"}, {"from": "gpt", "value": "A red circle."}],
    [{"from": "system", "value": "You are terse."}, {"from": "human", "value": "héllo 🙂  there"},
     {"from": "gpt", "value": " Hi! 42 "}, {"from": "human", "value": "And\n\nthe colour?"},
     {"from": "gpt", "value": "red"}, {"from": "human", "value": "Sure? <|eot_id|> </s> <|im_end|>"}],
    [{"from": "human", "value": "one"}, {"from": "gpt", "value": "two"}, {"from": "human", "value": "three"},
     {"from": "gpt", "value": "four 4444"}, {"from": "human", "value": "five"}, {"from": "gpt", "value": "日本語"}],
    [{"from": "system", "value": "Answer in French."}, {"from": "human", "value": "\tcat?\n"}],
]


class InternLM2Reference(SentencePieceBackend):
    """transformers' slow SentencePiece tokenizer, loading ``tokenizer.model`` (module docstring)."""

    vocab_files_names = {"vocab_file": "tokenizer.model"}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """name -> (directory, reference tokenizer); built once per session."""
    root = tmp_path_factory.mktemp("tokenizers")
    model = train_sentencepiece()
    dirs = {"llama3": write_llama3(str(root / "llama3")),
            "vicuna": write_sentencepiece(str(root / "vicuna"), model, "vicuna"),
            "vicuna_legacy": write_sentencepiece(str(root / "vicuna_legacy"), model, "vicuna", legacy=True),
            "internlm2": write_sentencepiece(str(root / "internlm2"), model, "internlm2")}
    refs = {name: transformers.AutoTokenizer.from_pretrained(d) for name, d in dirs.items() if name != "internlm2"}
    refs["internlm2"] = InternLM2Reference.from_pretrained(dirs["internlm2"], legacy=True)
    return {name: (dirs[name], refs[name]) for name in dirs}


def hf_messages(conversation):
    return [{"role": ROLES[t["from"]], "content": t["value"]} for t in conversation]


def hf_ids(ref, conversation, **kwargs):
    out = ref.apply_chat_template(hf_messages(conversation), tokenize=True, return_dict=True,
                                  add_generation_prompt=conversation[-1]["from"] == "human", **kwargs)
    return list(out["input_ids"])


@pytest.mark.parametrize("name", ["llama3", "vicuna", "vicuna_legacy", "internlm2"])
def test_ids_match_transformers_on_1200_strings(checkpoints, name):
    directory, ref = checkpoints[name]
    tok = load_tokenizer(directory)
    strings = parity_strings(list(tok.added_tokens) + ["<unk>", "<image>", "<|im_start|>", "<|eot_id|>"])
    assert len(strings) >= 1000 and len({s for s in strings if any(t in s for t in tok.added_tokens)}) > 100
    mismatches = [(s, tok.encode(s), ref.encode(s, add_special_tokens=False)) for s in strings
                  if tok.encode(s) != ref.encode(s, add_special_tokens=False)]
    assert mismatches == []
    assert all(tok.encode_with_offsets(s)[0] == tok.encode(s) for s in strings)
    if name != "internlm2":  # the slow reference has no offsets
        assert [tok.encode_with_offsets(s)[1] for s in strings] == [
            [tuple(o) for o in ref(s, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]
            for s in strings]
    if name != "internlm2":  # the reference's generic slow decode is not InternLM2's own
        assert [tok.decode(tok.encode(s)) for s in strings] == [ref.decode(ref.encode(s, add_special_tokens=False))
                                                              for s in strings]


@pytest.mark.parametrize("name", ["llama3", "vicuna", "internlm2"])
def test_special_ids_and_vocabulary_size(checkpoints, name):
    directory, ref = checkpoints[name]
    tok = load_tokenizer(directory)
    assert tok.vocab_size == len(ref)
    assert (tok.bos_id, tok.eos_id) == (ref.bos_token_id, ref.eos_token_id)
    assert tok.pad_id == (ref.pad_token_id if ref.pad_token_id is not None else tok.eos_id)  # llama3: no pad, unk
    assert tok.special_tokens["eos_token"] == ref.eos_token
    for token in ref.all_special_tokens:
        assert tok.special_ids(token) == [ref.convert_tokens_to_ids(token)]


@pytest.mark.parametrize("name", ["llama3", "vicuna", "internlm2"])
def test_chat_template_text_and_ids_match_apply_chat_template(checkpoints, name):
    directory, ref = checkpoints[name]
    tok = load_tokenizer(directory)
    for conversation in CONVERSATIONS:
        gen = conversation[-1]["from"] == "human"
        text = ref.apply_chat_template(hf_messages(conversation), tokenize=False, add_generation_prompt=gen)
        assert render_conversation(tok, conversation) == text
        example = tokenize_conversation(tok, "checkpoint", conversation, num_image_tokens=0)
        assert example.tokens.tolist() == hf_ids(ref, conversation)
        assert not example.image_slots.any()


EXPECTED_LOSS = {  # per answer: the text the model generates, its end-of-turn token included
    "llama3": ["A red circle.<|eot_id|>", "Hi! 42<|eot_id|>", "red<|eot_id|>"],  # the template trims answers
    # the answer's space after "ASSISTANT:" (the generation prompt) is its first piece's "▁", which decode drops
    "vicuna": ["A red circle.</s>", " Hi! 42 </s>", "red</s>"],
    "internlm2": ["A red circle.<|im_end|>", "Hi! 42 <|im_end|>", "red<|im_end|>"],  # "\n" after <|im_end|>: out
}


def runs(mask):
    starts = [i for i in range(len(mask)) if mask[i] and (i == 0 or not mask[i - 1])]
    return [(a, next((j for j in range(a, len(mask)) if not mask[j]), len(mask))) for a in starts]


@pytest.mark.parametrize("name", ["llama3", "vicuna", "internlm2"])
def test_masks_of_checkpoint_template(checkpoints, name):
    tok = load_tokenizer(checkpoints[name][0])
    loss = []
    for conversation in CONVERSATIONS[:2]:
        example = tokenize_conversation(tok, "checkpoint", conversation, num_image_tokens=0)
        loss += [tok.decode(example.tokens[a:b]) for a, b in runs(example.loss_mask)]
        prompts = [t["value"].strip() for t in conversation if t["from"] == "human"]
        assert [tok.decode(example.tokens[a:b]).strip() for a, b in runs(example.prompt_mask)] == prompts
        assert not (example.loss_mask & example.prompt_mask).any()
    assert loss == EXPECTED_LOSS[name]


@pytest.mark.parametrize("name, image_token", [("vicuna", "<image>"), ("internlm2", "<IMG_CONTEXT>")])
def test_image_placeholder_expands_like_the_processor(checkpoints, name, image_token):
    """The processors of llava-hf / InternVL write the image token n times into the prompt text."""
    directory, ref = checkpoints[name]
    tok = load_tokenizer(directory)
    assert tok.image_token == image_token and tok.image_token_id == ref.convert_tokens_to_ids(image_token)
    conversation = [{"from": "human", "value": "<image>\nWhat is at the top?"}, {"from": "gpt", "value": "red"}]
    example = tokenize_conversation(tok, "checkpoint", conversation, num_image_tokens=5)
    expanded = [{"from": "human", "value": image_token * 5 + "\nWhat is at the top?"}, conversation[1]]
    assert example.tokens.tolist() == hf_ids(ref, expanded)
    slots = example.tokens == tok.image_token_id
    assert example.image_slots.tolist() == slots.tolist() and slots.sum() == 5
    assert tok.decode(example.tokens[example.prompt_mask]).strip() == "What is at the top?"


def test_image_token_added_to_llama3_like_add_tokens(checkpoints):
    directory = checkpoints["llama3"][0]
    tok = load_tokenizer(directory)
    assert not tok.has_image_token
    tok = tok.with_image_token()
    ref = transformers.AutoTokenizer.from_pretrained(directory)
    ref.add_tokens(["<image>"], special_tokens=True)
    assert tok.image_token_id == ref.convert_tokens_to_ids("<image>") == tok.vocab_size - 1 == len(ref) - 1
    conversation = [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "red"}]
    example = tokenize_conversation(tok, "checkpoint", conversation, num_image_tokens=3)
    expanded = [{"from": "human", "value": "<image>" * 3 + "\nWhat?"}, conversation[1]]
    assert example.tokens.tolist() == hf_ids(ref, expanded)
    for s in parity_strings(["<image>", "<|eot_id|>"], count=200, seed=3):
        assert tok.encode(s) == ref.encode(s, add_special_tokens=False)


def test_stop_ids_named_templates_and_pickling(checkpoints):
    llama3, vicuna, internlm2 = (load_tokenizer(checkpoints[n][0]) for n in ("llama3", "vicuna", "internlm2"))
    eot = llama3.special_ids("<|eot_id|>")
    assert answer_stop_ids(llama3, "checkpoint") == eot == [llama3.eos_id]
    assert answer_stop_ids(vicuna, "checkpoint") == [vicuna.eos_id]
    assert answer_stop_ids(internlm2, "checkpoint") == sorted([internlm2.eos_id, *internlm2.special_ids("<|im_end|>")])
    # the project's named templates find the checkpoint's specials as single tokens
    named = tokenize_conversation(llama3, "llama3", CONVERSATIONS[0], 0)
    assert named.tokens.tolist()[:2] == [llama3.bos_id, *llama3.special_ids("<|start_header_id|>")]
    assert answer_stop_ids(llama3, "llama3") == eot
    for tok in (llama3, vicuna, internlm2):
        copy = pickle.loads(pickle.dumps(tok))  # Grain workers receive the tokenizer pickled
        text = "héllo <|eot_id|> <|im_end|></s> 12345 🙂"
        assert copy.encode(text) == tok.encode(text) and copy.image_token == tok.image_token
        assert copy.chat_template == tok.chat_template


def test_system_prompts_of_the_checkpoint_templates(checkpoints):
    vicuna, internlm2 = (load_tokenizer(checkpoints[n][0]) for n in ("vicuna", "internlm2"))
    prompt = [{"from": "human", "value": "hi"}]
    assert render_conversation(vicuna, prompt) == f"<s>{VICUNA_SYSTEM} USER: hi ASSISTANT:"
    assert render_conversation(internlm2, prompt) == (f"<|im_start|>system\n{INTERNVL_SYSTEM}<|im_end|>\n"
                                                      "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
