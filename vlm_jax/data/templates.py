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
assistant header appended instead (a generation prompt, no loss). A leading {"from": "system"} turn replaces
the template's system prompt ("plain" has none).

``template="checkpoint"`` uses the tokenizer's own Jinja chat template instead
(:mod:`vlm_jax.data.checkpoint_template`: whole-text encoding, identical to ``apply_chat_template``).
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

from vlm_jax.data.checkpoint_template import CHECKPOINT_TEMPLATE, chat_template_stop_ids, tokenize_with_chat_template
from vlm_jax.data.conversation import (
    ANSWER,
    BOILERPLATE,
    IMAGE,
    IMAGE_PLACEHOLDER,
    PROMPT,
    TokenizedExample,
    validate_conversation,
)

if TYPE_CHECKING:
    from vlm_jax.data.tokenizer import Tokenizer

__all__ = ["CHECKPOINT_TEMPLATE", "IMAGE_PLACEHOLDER", "TEMPLATES", "Template", "TokenizedExample",
           "answer_stop_ids", "template_specials", "template_texts", "tokenize_conversation"]


@dataclasses.dataclass(frozen=True)
class Template:
    """Boilerplate strings of one chat format; any of them may contain `specials`."""

    name: str
    system_format: str  # once, after BOS; "{system}" stands for the system prompt ("" : no system prompt)
    default_system: str
    user_prefix: str
    user_suffix: str
    assistant_prefix: str
    assistant_suffix: str  # end of an answer; part of the loss
    between_turns: str  # after an answer that is followed by another turn; no loss
    specials: tuple[str, ...]
    keep_human_text: bool = True  # False: only the image of the human turn is kept ("plain")

    def preamble(self, system: str | None = None) -> str:
        """The system block with ``system`` (None: the default system prompt)."""
        if system is not None and "{system}" not in self.system_format:
            raise ValueError(f"template {self.name!r} has no system prompt")
        return self.system_format.replace("{system}", self.default_system if system is None else system)


VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the user's questions.")
LLAMA3_SYSTEM = ("You are a helpful language and vision assistant. You are able to understand the visual "
                 "content that the user provides, and assist the user with a variety of tasks using natural language.")
CHATML_SYSTEM = "You are a helpful assistant."


def _llama3_header(role: str) -> str:
    return f"<|start_header_id|>{role}<|end_header_id|>\n\n"


TEMPLATES: dict[str, Template] = {
    "plain": Template("plain", "", "", "", "", "", "\n", "", (), keep_human_text=False),
    "vicuna_v1": Template("vicuna_v1", "{system} ", VICUNA_SYSTEM, "USER: ", " ", "ASSISTANT: ", "</s>", "",
                          ("</s>",)),
    "llama3": Template("llama3", _llama3_header("system") + "{system}<|eot_id|>", LLAMA3_SYSTEM,
                       _llama3_header("user"), "<|eot_id|>", _llama3_header("assistant"), "<|eot_id|>", "",
                       ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")),
    "chatml": Template("chatml", "<|im_start|>system\n{system}<|im_end|>\n", CHATML_SYSTEM, "<|im_start|>user\n",
                       "<|im_end|>\n", "<|im_start|>assistant\n", "<|im_end|>", "\n", ("<|im_start|>", "<|im_end|>")),
}


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
        for markup in (t.preamble(), t.user_prefix, t.user_suffix, t.assistant_prefix, t.assistant_suffix,
                       t.between_turns):
            texts.extend(p for p in _split_markup(markup, t.specials) if p not in t.specials)
    return texts


def _encode_markup(tok: Tokenizer, text: str, specials: tuple[str, ...]) -> list[int]:
    ids = []
    for part in _split_markup(text, specials):
        ids.extend(tok.special_ids(part) if part in specials else tok.encode(part))
    return ids


def _named(template: str) -> Template:
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; known: {', '.join(TEMPLATES)}, {CHECKPOINT_TEMPLATE}")
    return TEMPLATES[template]


def answer_stop_ids(tok: Tokenizer, template: str) -> list[int]:
    """Ids that end a generated answer: EOS and the first id of the template's end-of-answer."""
    if template == CHECKPOINT_TEMPLATE:
        return chat_template_stop_ids(tok)
    spec = _named(template)
    end = _encode_markup(tok, spec.assistant_suffix, spec.specials)[:1]
    return sorted({tok.eos_id, *end})


def tokenize_conversation(tok: Tokenizer, template: str, conversations: list[dict], num_image_tokens: int,
                          *, add_eos: bool | None = None) -> TokenizedExample:
    """Renders ``conversations`` ([{"from": "system"?}, {"from": "human"|"gpt", "value": str}, ...]) with a
    named template or, for ``"checkpoint"``, the tokenizer's own chat template.

    Named templates: BOS (if the tokenizer has one) starts the sequence; with ``add_eos`` (default True), EOS (in
    the loss) follows the final answer unless the template's end-of-answer already is EOS. The checkpoint's
    template places BOS itself; ``add_eos`` defaults to False there (the text is exactly the template's).
    Raises ValueError on an unknown template, an empty conversation, turns not alternating human/gpt, empty
    answers, a missing, duplicate or misplaced "<image>", or a placeholder/num_image_tokens mismatch.
    """
    if template == CHECKPOINT_TEMPLATE:
        return tokenize_with_chat_template(tok, conversations, num_image_tokens, add_eos=bool(add_eos))
    spec = _named(template)
    conversation = validate_conversation(conversations, num_image_tokens)
    if not spec.keep_human_text and len(conversation.turns) > 2:
        raise ValueError(f"template {spec.name!r} takes one human turn (a generation prompt: the image alone) and "
                         f"at most one gpt turn, got {len(conversation.turns)} turns")
    segments: list[tuple[list[int], int]] = []
    if tok.bos_id >= 0:
        segments.append(([tok.bos_id], BOILERPLATE))
    segments.append((_encode_markup(tok, spec.preamble(conversation.system), spec.specials), BOILERPLATE))
    for k, turn in enumerate(conversation.turns):
        if turn["from"] == "human":
            segments.append((_encode_markup(tok, spec.user_prefix, spec.specials), BOILERPLATE))
            before, image, after = turn["value"].partition(IMAGE_PLACEHOLDER)
            if spec.keep_human_text:
                segments.append((tok.encode(before), PROMPT))
            if image:
                segments.append(([tok.image_token_id] * int(num_image_tokens), IMAGE))
            if spec.keep_human_text:
                segments.append((tok.encode(after), PROMPT))
            segments.append((_encode_markup(tok, spec.user_suffix, spec.specials), BOILERPLATE))
        else:
            segments.append((_encode_markup(tok, spec.assistant_prefix, spec.specials), BOILERPLATE))
            segments.append((tok.encode(turn["value"]), ANSWER))
            segments.append((_encode_markup(tok, spec.assistant_suffix, spec.specials), ANSWER))
            if k + 1 < len(conversation.turns):
                segments.append((_encode_markup(tok, spec.between_turns, spec.specials), BOILERPLATE))
    if conversation.ends_with_human:
        segments.append((_encode_markup(tok, spec.assistant_prefix, spec.specials), BOILERPLATE))
    elif (add_eos is None or add_eos) and segments[-1][0][-1:] != [tok.eos_id]:
        segments.append(([tok.eos_id], ANSWER))
    return TokenizedExample.from_kinds([i for ids, _ in segments for i in ids],
                                       [kind for ids, kind in segments for _ in ids])
