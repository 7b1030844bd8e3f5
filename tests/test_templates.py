"""Tests for vlm_jax.data.templates: rendered text against the published chat formats (LLaVA
conv_vicuna_v1 / conv_plain, Meta Llama-3 headers, ChatML), and the four masks."""

import numpy as np
import pytest

from vlm_jax.data.templates import TEMPLATES, answer_stop_ids, tokenize_conversation
from vlm_jax.data.tokenizer import Tokenizer, default_tokenizer, train_tokenizer

VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
                 "helpful, detailed, and polite answers to the user's questions.")
LLAMA3_SYSTEM = ("You are a helpful language and vision assistant. You are able to understand the visual content "
                 "that the user provides, and assist the user with a variety of tasks using natural language.")
ONE_TURN = [{"from": "human", "value": "<image>\nWhat is at the top?"}, {"from": "gpt", "value": "red circle"}]
TWO_TURNS = ONE_TURN + [{"from": "human", "value": "And the colour?"}, {"from": "gpt", "value": "red"}]
EXPECTED = {  # rendered with one "<image>" standing for the visual tokens; "</s>" is EOS
    "vicuna_v1": f"{VICUNA_SYSTEM} USER: <image>\nWhat is at the top? ASSISTANT: red circle</s>"
                 "USER: And the colour? ASSISTANT: red</s>",
    "llama3": "<|start_header_id|>system<|end_header_id|>\n\n" + LLAMA3_SYSTEM + "<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\n<image>\nWhat is at the top?<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\nred circle<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\nAnd the colour?<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\nred<|eot_id|></s>",
    "chatml": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
              "<|im_start|>user\n<image>\nWhat is at the top?<|im_end|>\n<|im_start|>assistant\nred circle<|im_end|>\n"
              "<|im_start|>user\nAnd the colour?<|im_end|>\n<|im_start|>assistant\nred<|im_end|></s>",
}
ANSWER_ENDS = {"vicuna_v1": "</s>", "llama3": "<|eot_id|>", "chatml": "<|im_end|>"}


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return default_tokenizer(str(tmp_path_factory.mktemp("tok")))


def render(tok, tokens, image_slots):
    """Text of `tokens` with the image run collapsed to one "<image>" and EOS written as "</s>"."""
    out, previous_slot = [], False
    for token, slot in zip(tokens.tolist(), image_slots.tolist()):
        if slot and previous_slot:
            continue
        out.append("</s>" if token == tok.eos_id else "<image>" if slot else tok.decode([token]))
        previous_slot = slot
    return "".join(out)


def runs(mask):
    """(start, stop) of the True runs of a 1-D bool array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


@pytest.mark.parametrize("template", sorted(EXPECTED))
def test_rendering_and_masks_of_multi_turn_conversations(tok, template):
    out = tokenize_conversation(tok, template, TWO_TURNS, num_image_tokens=7)
    assert out._fields == ("tokens", "loss_mask", "image_slots", "prompt_mask")
    assert out.tokens.dtype == np.int32 and all(m.dtype == bool for m in out[1:])
    assert len({len(a) for a in out}) == 1 and out.tokens.ndim == 1
    assert out.tokens[0] == tok.bos_id and (out.tokens == tok.bos_id).sum() == 1
    assert render(tok, out.tokens[1:], out.image_slots[1:]) == EXPECTED[template]
    # image slots: one contiguous run of exactly 7 image tokens, nothing else carries that id
    assert runs(out.image_slots) == [(runs(out.image_slots)[0][0], runs(out.image_slots)[0][0] + 7)]
    assert (out.tokens[out.image_slots] == tok.image_token_id).all()
    assert (out.tokens[~out.image_slots] != tok.image_token_id).all()
    # loss: exactly the answers and their end-of-turn tokens (+ the final EOS)
    loss_runs = [render(tok, out.tokens[a:b], out.image_slots[a:b]) for a, b in runs(out.loss_mask)]
    final = "" if template == "vicuna_v1" else "</s>"
    assert loss_runs == [f"red circle{ANSWER_ENDS[template]}", f"red{ANSWER_ENDS[template]}{final}"]
    # prompt: the human text without the placeholder, nothing else
    assert tok.decode(out.tokens[out.prompt_mask]) == "\nWhat is at the top?And the colour?"
    assert not (out.loss_mask & out.image_slots).any()
    assert not (out.prompt_mask & (out.loss_mask | out.image_slots)).any()


def test_plain_keeps_image_and_caption_only(tok):
    conversation = [{"from": "human", "value": "Describe the image briefly.\n<image>"},
                    {"from": "gpt", "value": "a blue star on white"}]
    out = tokenize_conversation(tok, "plain", conversation, num_image_tokens=4)
    caption = tok.encode("a blue star on white\n")
    assert out.tokens.tolist() == [tok.bos_id] + [tok.image_token_id] * 4 + caption + [tok.eos_id]
    assert out.loss_mask.tolist() == [False] * 5 + [True] * (len(caption) + 1)
    assert out.image_slots.tolist() == [False] + [True] * 4 + [False] * (len(caption) + 1)
    assert not out.prompt_mask.any()
    no_eos = tokenize_conversation(tok, "plain", conversation, num_image_tokens=4, add_eos=False)
    assert no_eos.tokens.tolist() == out.tokens.tolist()[:-1]


def test_add_eos_and_generation_prompt(tok):
    vicuna = tokenize_conversation(tok, "vicuna_v1", ONE_TURN, 3)
    vicuna_no_eos = tokenize_conversation(tok, "vicuna_v1", ONE_TURN, 3, add_eos=False)
    assert vicuna.tokens.tolist() == vicuna_no_eos.tokens.tolist() and vicuna.tokens[-1] == tok.eos_id
    chatml = tokenize_conversation(tok, "chatml", ONE_TURN, 3, add_eos=False)
    assert chatml.tokens[-1] == tok.special_ids("<|im_end|>")[0] and chatml.loss_mask[-1]
    prompt = tokenize_conversation(tok, "llama3", ONE_TURN[:1], 3)
    assert render(tok, prompt.tokens, prompt.image_slots).endswith(
        "?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    assert not prompt.loss_mask.any()
    full = tokenize_conversation(tok, "llama3", ONE_TURN, 3)
    assert full.tokens[: len(prompt.tokens)].tolist() == prompt.tokens.tolist()


def test_text_only_conversation(tok):
    out = tokenize_conversation(tok, "chatml", [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yes"}], 0)
    assert not out.image_slots.any() and tok.decode(out.tokens[out.prompt_mask]) == "hi"


def test_tokenizer_without_specials_encodes_them_as_text(tmp_path):
    texts = ["What is at the top?", "red circle", "system", "user", "assistant", "You are a helpful assistant."]
    plain = Tokenizer(train_tokenizer(texts, str(tmp_path / "p.model"), 400, [])).with_image_token()
    out = tokenize_conversation(plain, "chatml", TWO_TURNS, 5)
    assert out.image_slots.sum() == 5 and (out.tokens[out.image_slots] == plain.image_token_id).all()
    assert render(plain, out.tokens[1:], out.image_slots[1:]) == EXPECTED["chatml"]
    loss_runs = [plain.decode(out.tokens[a:b]) for a, b in runs(out.loss_mask)]
    assert loss_runs == ["red circle<|im_end|>", "red<|im_end|>"]


@pytest.mark.parametrize("conversation, num_image_tokens, template, message", [
    ([], 4, "vicuna_v1", "empty conversation"),
    (ONE_TURN, 4, "alpaca", "unknown template"),
    ([{"from": "human", "value": "no image"}, {"from": "gpt", "value": "x"}], 4, "chatml", "missing <image>"),
    ([{"from": "human", "value": "<image><image>"}, {"from": "gpt", "value": "x"}], 4, "chatml", "duplicate"),
    (ONE_TURN + [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "x"}], 4, "llama3", "first human"),
    ([{"from": "human", "value": "q"}, {"from": "gpt", "value": "<image>"}], 0, "llama3", "first human"),
    (ONE_TURN, 0, "vicuna_v1", "num_image_tokens is 0"),
    (ONE_TURN, -1, "vicuna_v1", "non-negative"),
    ([{"from": "gpt", "value": "x"}], 0, "chatml", "must come from 'human'"),
    ([ONE_TURN[0], ONE_TURN[0]], 4, "chatml", "must come from 'gpt'"),
    ([ONE_TURN[0], {"from": "gpt", "value": ""}], 4, "chatml", "empty answer"),
    ([ONE_TURN[0], {"from": "gpt"}], 4, "chatml", "str 'value'"),
    (TWO_TURNS, 4, "plain", "at most one gpt turn"),
])
def test_bad_conversations_raise(tok, conversation, num_image_tokens, template, message):
    with pytest.raises(ValueError, match=message):
        tokenize_conversation(tok, template, conversation, num_image_tokens)


def test_template_registry_and_stop_ids(tok):
    assert set(TEMPLATES) == {"plain", "vicuna_v1", "llama3", "chatml"}
    assert answer_stop_ids(tok, "vicuna_v1") == [tok.eos_id]
    assert answer_stop_ids(tok, "llama3") == sorted([tok.eos_id, tok.special_ids("<|eot_id|>")[0]])
    assert answer_stop_ids(tok, "chatml") == sorted([tok.eos_id, tok.special_ids("<|im_end|>")[0]])
    assert answer_stop_ids(tok, "plain") == sorted([tok.eos_id, tok.encode("\n")[0]])
    with pytest.raises(ValueError, match="unknown template"):
        answer_stop_ids(tok, "alpaca")


@pytest.mark.parametrize("template, default_block, system_block", [
    ("vicuna_v1", VICUNA_SYSTEM + " ", "Be brief. "),
    ("llama3", f"<|start_header_id|>system<|end_header_id|>\n\n{LLAMA3_SYSTEM}<|eot_id|>",
     "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"),
    ("chatml", "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n",
     "<|im_start|>system\nBe brief.<|im_end|>\n"),
])
def test_system_turn_replaces_the_default_system_prompt(tok, template, default_block, system_block):
    assert EXPECTED[template].startswith(default_block)
    out = tokenize_conversation(tok, template, [{"from": "system", "value": "Be brief."}, *TWO_TURNS], 7)
    assert render(tok, out.tokens[1:], out.image_slots[1:]) == system_block + EXPECTED[template][len(default_block):]
    default = tokenize_conversation(tok, template, TWO_TURNS, 7)
    def loss_text(example):
        return [render(tok, example.tokens[a:b], example.image_slots[a:b]) for a, b in runs(example.loss_mask)]

    assert loss_text(out) == loss_text(default) and len(loss_text(out)) == 2  # the system prompt is boilerplate
    assert tok.decode(out.tokens[out.prompt_mask]) == "\nWhat is at the top?And the colour?"
    with pytest.raises(ValueError, match="no system prompt"):
        tokenize_conversation(tok, "plain", [{"from": "system", "value": "x"}, *ONE_TURN], 7)
    with pytest.raises(ValueError, match="system prompt but no turns"):
        tokenize_conversation(tok, template, [{"from": "system", "value": "x"}], 7)
