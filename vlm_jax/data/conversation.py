"""Conversations in the LLaVA data format and their tokenised form, shared by named and checkpoint templates.

A conversation is ``[{"from": "system", "value": ...}?, {"from": "human", ...}, {"from": "gpt", ...}, ...]``:
an optional system prompt, then turns alternating human / gpt, human first. One "<image>" placeholder in the
first human turn stands for the image (spec/methods.md §1 "LLaVA image splicing"); it expands to
``num_image_tokens`` copies of the tokenizer's image token.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

IMAGE_PLACEHOLDER = "<image>"
BOILERPLATE, PROMPT, IMAGE, ANSWER = range(4)  # token kinds; a token spanning two regions takes the larger


class TokenizedExample(NamedTuple):
    """One conversation as equal-length 1-D arrays [L]."""

    tokens: np.ndarray  # int32; image placeholder expanded to num_image_tokens x image_token_id
    loss_mask: np.ndarray  # bool; answer tokens and their end-of-turn / EOS
    image_slots: np.ndarray  # bool; exactly the visual positions
    prompt_mask: np.ndarray  # bool; human-turn text (no boilerplate, image slots or answers)

    @classmethod
    def from_kinds(cls, tokens: list[int], kinds: list[int]) -> TokenizedExample:
        kinds = np.asarray(kinds, np.int8).reshape(-1)
        return cls(np.asarray(tokens, np.int32).reshape(-1), kinds == ANSWER, kinds == IMAGE, kinds == PROMPT)


@dataclasses.dataclass(frozen=True)
class Conversation:
    """A validated conversation: the system prompt (None: the template's default) and the alternating turns."""

    system: str | None
    turns: tuple[dict, ...]

    @property
    def ends_with_human(self) -> bool:
        """True for a prompt awaiting an answer (templates then append the assistant header)."""
        return self.turns[-1]["from"] == "human"


def validate_conversation(conversations: list[dict], num_image_tokens: int) -> Conversation:
    """Checks the structure (module docstring) and the placeholder against ``num_image_tokens``; ValueError
    naming the offending turn otherwise."""
    if not conversations:
        raise ValueError("empty conversation")
    if not isinstance(num_image_tokens, (int, np.integer)) or num_image_tokens < 0:
        raise ValueError(f"num_image_tokens must be a non-negative int, got {num_image_tokens!r}")
    for k, turn in enumerate(conversations):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise ValueError(f"turn {k} must be a dict with a str 'value', got {turn!r}")
    has_system = conversations[0].get("from") == "system"
    turns = conversations[1:] if has_system else conversations
    if not turns:
        raise ValueError("conversation has a system prompt but no turns")
    for k, turn in enumerate(turns, start=int(has_system)):
        expected = "human" if (k - has_system) % 2 == 0 else "gpt"
        if turn.get("from") != expected:
            raise ValueError(f"turn {k} must come from {expected!r} (turns alternate, human first), "
                             f"got {turn.get('from')!r}")
        if expected == "gpt" and not turn["value"]:
            raise ValueError(f"turn {k}: empty answer")
        if IMAGE_PLACEHOLDER in turn["value"] and k != has_system:
            raise ValueError(f"turn {k}: {IMAGE_PLACEHOLDER} may only appear in the first human turn")
    if has_system and IMAGE_PLACEHOLDER in conversations[0]["value"]:
        raise ValueError(f"turn 0: {IMAGE_PLACEHOLDER} may only appear in the first human turn")
    placeholders = turns[0]["value"].count(IMAGE_PLACEHOLDER)
    if placeholders > 1:
        raise ValueError(f"duplicate {IMAGE_PLACEHOLDER}: found {placeholders} in the first human turn")
    if placeholders == 1 and num_image_tokens == 0:
        raise ValueError(f"conversation has {IMAGE_PLACEHOLDER} but num_image_tokens is 0")
    if placeholders == 0 and num_image_tokens > 0:
        raise ValueError(f"missing {IMAGE_PLACEHOLDER} in the first human turn for {num_image_tokens} image tokens")
    return Conversation(conversations[0]["value"] if has_system else None, tuple(turns))
