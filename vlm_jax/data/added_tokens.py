"""Added tokens: strings matched whole in the text before the model's own segmentation.

The rules are those of the Hugging Face ``tokenizers`` library (``AddedVocabulary``), which transformers
applies to every checkpoint tokenizer: at each position the longest token wins (leftmost-longest); ``lstrip`` /
``rstrip`` tokens swallow the whitespace on their left / right; a ``single_word`` token only matches between
non-word characters. ``normalized`` is kept for round trips; the SentencePiece backend matches every token on
the raw text (checkpoints with added tokens use identity normalisation).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class AddedToken:
    """One added token as ``tokenizer_config.json`` (``added_tokens_decoder``) and ``tokenizer.json`` store it."""

    content: str
    special: bool = True
    lstrip: bool = False
    rstrip: bool = False
    normalized: bool = False
    single_word: bool = False

    @classmethod
    def parse(cls, value: str | Mapping[str, Any], *, special: bool = True) -> AddedToken:
        """From a plain string or a serialised dict (``{"content": ..., "lstrip": ...}``, the legacy
        ``{"__type": "AddedToken", ...}`` form included); unknown keys (``id``, ``__type``) are dropped."""
        if isinstance(value, str) and value:
            return cls(value, special=special, normalized=not special)
        if not isinstance(value, Mapping) or not isinstance(value.get("content"), str) or not value["content"]:
            raise ValueError(f"an added token must be a non-empty string or a dict with a non-empty 'content', "
                             f"got {value!r}")
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: bool(v) for k, v in value.items() if k in fields and k != "content"}
        kwargs.setdefault("special", special)
        kwargs.setdefault("normalized", not kwargs["special"])
        return cls(value["content"], **kwargs)


def _pattern(token: AddedToken) -> str:
    body = re.escape(token.content)
    if token.single_word:
        body = rf"(?<!\w){body}(?!\w)"
    return (r"\s*" if token.lstrip else "") + body + (r"\s*" if token.rstrip else "")


@functools.lru_cache(maxsize=64)
def _matcher(tokens: tuple[AddedToken, ...]) -> tuple[re.Pattern, dict[str, AddedToken]]:
    longest_first = sorted(tokens, key=lambda t: len(t.content), reverse=True)
    groups = {f"t{i}": t for i, t in enumerate(longest_first)}
    return re.compile("|".join(f"(?P<{name}>{_pattern(t)})" for name, t in groups.items())), groups


def split_added(text: str, tokens: Sequence[AddedToken]) -> list[tuple[int, int, AddedToken | None]]:
    """Cuts ``text`` into ``(start, end, token)`` pieces covering it in order; ``token`` is the matched added token
    or ``None`` for the text between matches (never empty)."""
    if not tokens:
        return [(0, len(text), None)] if text else []
    pattern, groups = _matcher(tuple(tokens))
    pieces, position = [], 0
    for match in pattern.finditer(text):
        if match.start() > position:
            pieces.append((position, match.start(), None))
        pieces.append((match.start(), match.end(), groups[match.lastgroup]))
        position = match.end()
    if position < len(text):
        pieces.append((position, len(text), None))
    return pieces
