"""Chat templates and conversation tokenisation (DESIGN.md data flow; spec/methods.md §1 "LLaVA
image splicing": one "<image>" placeholder expanded to the visual tokens, loss on answers only).

Templates (rendered text, "{u}" human turn, "{a}" answer, [loss] marks what the loss sees):
  plain      <s> <image> {a}\\n [loss: {a}\\n]            LLaVA conv_plain (human text dropped)
  vicuna_v1  <s> SYSTEM USER: {u} ASSISTANT: {a}</s>USER: ...   LLaVA conv_vicuna_v1 [loss: {a}</s>]
  llama3     <s> <|start_header_id|>system<|end_header_id|>\\n\\nSYSTEM<|eot_id|>
             <|start_header_id|>user<|end_header_id|>\\n\\n{u}<|eot_id|>
             <|start_header_id|>assistant<|end_header_id|>\\n\\n{a}<|eot_id|>   [loss: {a}<|eot_id|>]
  chatml     <s> <|im_start|>system\\nSYSTEM<|im_end|>\\n<|im_start|>user\\n{u}<|im_end|>\\n
             <|im_start|>assistant\\n{a}<|im_end|>\\n          InternLM2/Qwen2 [loss: {a}<|im_end|>]
Specials are single pieces of vlm_jax-trained tokenizers (user-defined symbols); with loaded
tokenizers lacking them they are encoded as text (Tokenizer.special_ids). "</s>" is the EOS piece.
Segments (boilerplate, human text, answers) are encoded separately and concatenated, as LLaVA
tokenises per round; with dummy-prefix tokenizers this can differ from whole-string encoding in
the whitespace pieces at segment boundaries. Human text containing a special's literal text
encodes to that special. With add_eos, EOS follows the last answer (in the loss) unless the
end-of-answer already is EOS (vicuna_v1). A conversation ending with a human turn gets the
assistant header appended instead (a generation prompt, no loss).
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from vlm_jax.data.tokenizer import Tokenizer

IMAGE_PLACEHOLDER = "<image>"
_BOILERPLATE, _PROMPT, _ANSWER, _IMAGE = range(4)


@dataclasses.dataclass(frozen=True)
class Template:
    """Boilerplate strings of one chat format; any of them may contain `specials`."""

    name: str
    preamble: str  # once, after BOS (system prompt)
    user_prefix: str
    user_suffix: str
    assistant_prefix: str
    assistant_suffix: str  # end of an answer; part of the loss
    between_turns: str  # after an answer that is followed by another turn; no loss
    specials: tuple[str, ...]
    keep_human_text: bool = True  # False: only the image of the human turn is kept ("plain")


VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the user's questions.")
LLAMA3_SYSTEM = ("You are a helpful language and vision assistant. You are able to understand the visual "
                 "content that the user provides, and assist the user with a variety of tasks using natural language.")
CHATML_SYSTEM = "You are a helpful assistant."


def _llama3_header(role: str) -> str:
    return f"<|start_header_id|>{role}<|end_header_id|>\n\n"


TEMPLATES: dict[str, Template] = {
    "plain": Template("plain", "", "", "", "", "\n", "", (), keep_human_text=False),
    "vicuna_v1": Template("vicuna_v1", VICUNA_SYSTEM + " ", "USER: ", " ", "ASSISTANT: ", "</s>", "", ("</s>",)),
    "llama3": Template("llama3", _llama3_header("system") + LLAMA3_SYSTEM + "<|eot_id|>", _llama3_header("user"),
                       "<|eot_id|>", _llama3_header("assistant"), "<|eot_id|>", "",
                       ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")),
    "chatml": Template("chatml", f"<|im_start|>system\n{CHATML_SYSTEM}<|im_end|>\n", "<|im_start|>user\n",
                       "<|im_end|>\n", "<|im_start|>assistant\n", "<|im_end|>", "\n", ("<|im_start|>", "<|im_end|>")),
}


class TokenizedExample(NamedTuple):
    """One conversation as equal-length 1-D arrays [L]."""

    tokens: np.ndarray  # int32; image placeholder expanded to num_image_tokens x image_token_id
    loss_mask: np.ndarray  # bool; answer tokens and their end-of-turn / EOS
    image_slots: np.ndarray  # bool; exactly the visual positions
    prompt_mask: np.ndarray  # bool; human-turn text (no boilerplate, image slots or answers)


def template_specials() -> list[str]:
    """All specials used by the templates, in a fixed order."""
    return sorted({s for t in TEMPLATES.values() for s in t.specials})


def _split_markup(text: str, specials: tuple[str, ...]) -> list[str]:
    if not specials:
        return [text] if text else []
    pattern = "(" + "|".join(re.escape(s) for s in specials) + ")"
    return [part for part in re.split(pattern, text) if part]


def template_texts() -> list[str]:
    """The plain-text fragments of all templates' boilerplate (for tokenizer training)."""
    texts = []
    for t in TEMPLATES.values():
        for markup in (t.preamble, t.user_prefix, t.user_suffix, t.assistant_prefix, t.assistant_suffix,
                       t.between_turns):
            texts.extend(p for p in _split_markup(markup, t.specials) if p not in t.specials)
    return texts


def _encode_markup(tok: Tokenizer, text: str, specials: tuple[str, ...]) -> list[int]:
    ids = []
    for part in _split_markup(text, specials):
        ids.extend(tok.special_ids(part) if part in specials else tok.encode(part))
    return ids


def _validate(conversations: list[dict], num_image_tokens: int, template: Template) -> None:
    if not conversations:
        raise ValueError("empty conversation")
    if not isinstance(num_image_tokens, (int, np.integer)) or num_image_tokens < 0:
        raise ValueError(f"num_image_tokens must be a non-negative int, got {num_image_tokens!r}")
    for k, turn in enumerate(conversations):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise ValueError(f"turn {k} must be a dict with a str 'value', got {turn!r}")
        expected = "human" if k % 2 == 0 else "gpt"
        if turn.get("from") != expected:
            raise ValueError(f"turn {k} must come from {expected!r} (turns alternate, human first), "
                             f"got {turn.get('from')!r}")
        if expected == "gpt" and not turn["value"]:
            raise ValueError(f"turn {k}: empty answer")
        if turn["value"].count(IMAGE_PLACEHOLDER) and k != 0:
            raise ValueError(f"turn {k}: {IMAGE_PLACEHOLDER} may only appear in the first human turn")
    placeholders = conversations[0]["value"].count(IMAGE_PLACEHOLDER)
    if placeholders > 1:
        raise ValueError(f"duplicate {IMAGE_PLACEHOLDER}: found {placeholders} in the first human turn")
    if placeholders == 1 and num_image_tokens == 0:
        raise ValueError(f"conversation has {IMAGE_PLACEHOLDER} but num_image_tokens is 0")
    if placeholders == 0 and num_image_tokens > 0:
        raise ValueError(f"missing {IMAGE_PLACEHOLDER} in the first human turn for {num_image_tokens} image tokens")
    if not template.keep_human_text and len(conversations) != 2:
        raise ValueError(f"template {template.name!r} takes exactly one human and one gpt turn, "
                         f"got {len(conversations)} turns")


def answer_stop_ids(tok: Tokenizer, template: str) -> list[int]:
    """Ids that end a generated answer: EOS and the first id of the template's end-of-answer."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; known: {', '.join(TEMPLATES)}")
    spec = TEMPLATES[template]
    end = _encode_markup(tok, spec.assistant_suffix, spec.specials)[:1]
    return sorted({tok.eos_id, *end})


def tokenize_conversation(tok: Tokenizer, template: str, conversations: list[dict], num_image_tokens: int,
                          *, add_eos: bool = True) -> TokenizedExample:
    """Renders `conversations` ([{"from": "human"|"gpt", "value": str}, ...]) with a template.

    BOS (if the tokenizer has one) starts the sequence. With `add_eos`, EOS (in the loss) follows the
    final answer unless the template's end-of-answer already is EOS. Raises ValueError on an unknown
    template, an empty conversation, turns not alternating human/gpt, empty answers, a missing,
    duplicate or misplaced "<image>", or a placeholder/num_image_tokens mismatch.
    """
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; known: {', '.join(TEMPLATES)}")
    spec = TEMPLATES[template]
    _validate(conversations, num_image_tokens, spec)
    segments: list[tuple[list[int], int]] = []
    if tok.bos_id >= 0:
        segments.append(([tok.bos_id], _BOILERPLATE))
    segments.append((_encode_markup(tok, spec.preamble, spec.specials), _BOILERPLATE))
    for k, turn in enumerate(conversations):
        if turn["from"] == "human":
            segments.append((_encode_markup(tok, spec.user_prefix, spec.specials), _BOILERPLATE))
            before, image, after = turn["value"].partition(IMAGE_PLACEHOLDER)
            if spec.keep_human_text:
                segments.append((tok.encode(before), _PROMPT))
            if image:
                segments.append(([tok.image_token_id] * int(num_image_tokens), _IMAGE))
            if spec.keep_human_text:
                segments.append((tok.encode(after), _PROMPT))
            segments.append((_encode_markup(tok, spec.user_suffix, spec.specials), _BOILERPLATE))
        else:
            segments.append((_encode_markup(tok, spec.assistant_prefix, spec.specials), _BOILERPLATE))
            segments.append((tok.encode(turn["value"]), _ANSWER))
            segments.append((_encode_markup(tok, spec.assistant_suffix, spec.specials), _ANSWER))
            if k + 1 < len(conversations):
                segments.append((_encode_markup(tok, spec.between_turns, spec.specials), _BOILERPLATE))
    if conversations[-1]["from"] == "human":
        segments.append((_encode_markup(tok, spec.assistant_prefix, spec.specials), _BOILERPLATE))
    elif add_eos and segments[-1][0][-1:] != [tok.eos_id]:
        segments.append(([tok.eos_id], _ANSWER))
    tokens = np.asarray([i for ids, _ in segments for i in ids], np.int32)
    kinds = np.asarray([kind for ids, kind in segments for _ in ids], np.int8).reshape(-1)
    return TokenizedExample(tokens, kinds == _ANSWER, kinds == _IMAGE, kinds == _PROMPT)
