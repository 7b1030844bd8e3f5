"""Map a free-form model reply to the letter of a multiple-choice option (MMBench, ScienceQA, MMMU).

The models are prompted with "Answer with the option's letter from the given choices directly."
(spec §6.5); replies are mostly a bare letter but sometimes a sentence or the option text.
"""

from __future__ import annotations

import re
import string

_WHOLE_REPLY_LETTER = re.compile(r"[(\[]?\s*([A-Za-z])\s*[)\]]?\s*[.:]?")
_STATED_LETTER = re.compile(
    r"(?i:\b(?:answer|option|choice))\s*(?i:is)?\s*[:\-]?\s*[(\[]?([A-Z])(?![A-Za-z0-9'])")
_LEADING_LETTER = re.compile(r"[(\[]([A-Z])[)\]]|([A-Z])[.:),](?=\s|$)")
_STANDALONE_LETTER = re.compile(r"(?<![A-Za-z0-9'])([A-Z])(?![A-Za-z0-9'])")
# "A cat", "I think": a lowercase word other than a conjunction ("A or B") follows.
_ARTICLE_OR_PRONOUN_FOLLOWER = re.compile(r"\s+(?!(?:or|and|nor)\b)[a-z]")


def _normalize_text(text: str) -> str:
    table = str.maketrans({c: " " for c in string.punctuation})
    return " ".join(text.lower().translate(table).split())


def _contains_words(text: str, phrase: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None


def _unique(found: set[str], letters: list[str]) -> str | None:
    if len(found) == 1:
        (letter,) = found
        return letter if letter in letters else None
    return None


def _match_option_text(reply: str, options: list[str], letters: list[str]) -> str | None:
    reply_norm = _normalize_text(reply)
    option_norms = [_normalize_text(o) for o in options]
    exact = {letters[i] for i, o in enumerate(option_norms) if o and o == reply_norm}
    if exact:
        return _unique(exact, letters)
    contained = [i for i, o in enumerate(option_norms) if o and _contains_words(reply_norm, o)]
    # An option found only as part of a longer found option ("cat" in "black cat") does not count.
    maximal = {letters[i] for i in contained
               if not any(j != i and _contains_words(option_norms[j], option_norms[i])
                          for j in contained)}
    return _unique(maximal, letters)


def extract_choice(text: str, options: list[str]) -> str | None:
    """Letter ("A", "B", ...) of the option chosen by ``text``; None when absent or ambiguous.

    ``options[i]`` is the text of option ``chr(ord("A") + i)``. Rules, first decisive one wins:
    1. the whole reply is a letter: "B", "b", "(B)", "[B]", "B.", "B)";
    2. a stated letter: "The answer is D", "Answer: (C)", "the correct option is B" (several
       different stated letters -> None);
    3. a leading letter with a delimiter: "B. cat", "(B) cat", "B: cat", "B, because ...";
    4. the option text: the reply equals one option's text, or exactly one option's text occurs in
       it as whole words (case and punctuation ignored);
    5. exactly one standalone capital letter in the reply ("I think B"), not counting "A" / "I"
       followed by a lowercase word other than "or"/"and"/"nor" (article / pronoun).
    A letter outside the option range gives None.
    """
    if not options:
        raise ValueError("extract_choice needs at least one option")
    if len(options) > 26:
        raise ValueError(f"at most 26 options are supported, got {len(options)}")
    letters = [chr(ord("A") + i) for i in range(len(options))]
    reply = text.strip()

    whole = _WHOLE_REPLY_LETTER.fullmatch(reply)
    if whole:
        return _unique({whole.group(1).upper()}, letters)
    stated = {m.group(1) for m in _STATED_LETTER.finditer(reply)}
    if stated:
        return _unique(stated, letters)
    leading = _LEADING_LETTER.match(reply)
    if leading:
        return _unique({leading.group(1) or leading.group(2)}, letters)
    by_text = _match_option_text(reply, options, letters)
    if by_text is not None:
        return by_text
    standalone = set()
    for m in _STANDALONE_LETTER.finditer(reply):
        if m.group(1) in "AI" and _ARTICLE_OR_PRONOUN_FOLLOWER.match(reply, m.end()):
            continue
        standalone.add(m.group(1))
    return _unique(standalone, letters)
