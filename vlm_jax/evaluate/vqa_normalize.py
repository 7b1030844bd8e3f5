"""Answer normalisation of the official VQA evaluation (VQAv2 / TextVQA / VizWiz).

Implements the processing listed on the VQA evaluation page (visualqa.org/evaluation.html),
applied identically to predictions and ground-truth answers:

1. newlines / tabs -> spaces, strip;
2. punctuation: each of ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !`` is deleted when it touches
   a space anywhere in the text (``"p "`` or ``" p"``) or when the text contains a comma between
   two digits ("100,978" -> "100978"); otherwise it is replaced by a space. Apostrophes and colons
   are kept ("girl's", "2:50");
3. periods are removed unless followed by a digit ("2.5" kept, "dog." -> "dog");
4. lowercase, number words "none"/"zero".."ten" -> digits ("twenty two" has no entry and stays),
   articles a / an / the dropped;
5. contractions missing an apostrophe are repaired ("dont" -> "don't").

The contraction table is built from canonical spellings: each canonical form is keyed by every
spelling with exactly one apostrophe left out ("couldn't've" <- "couldnt've", "couldn'tve"),
which is the rule the official table follows. The official table's capitalised keys ("Im",
"Ive", "Id've", "I'dve") can never match lowercased text, so those contractions are not listed;
its identity entries ("let's", "she's") change nothing and are not listed either.

Known deviation: the official script passes ``re.UNICODE`` (= 32) as the *count* of its period
substitution, so only the first 32 periods of an answer are removed; here all are.

``normalize_textvqa_answer`` adds the pre-step of the TextVQA evaluator used by LLaVA
(``m4c_evaluator.EvalAIAnswerProcessor``): commas and question marks deleted and "'s" split off
("girl's" -> "girl 's") before the steps above.
"""

from __future__ import annotations

import re

NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES = frozenset({"a", "an", "the"})
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<",
               "@", "`", ",", "?", "!")

_CANONICAL_CONTRACTIONS = (
    "ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've "
    "hasn't haven't he'd he'd've he's how'd how'll how's isn't it'd it'd've it'll ma'am "
    "mightn't mightn't've might've mustn't must've needn't not've o'clock oughtn't 'ow's'at "
    "shan't she'd've should've shouldn't shouldn't've somebody'd somebody'd've somebody'll "
    "somebody's someone'd someone'd've someone'll someone's something'd something'd've "
    "something'll that's there'd there'd've there're there's they'd they'd've they'll they're "
    "they've 'twas wasn't we'd've we've weren't what'll what're what's what've when's where'd "
    "where's where've who'd who'd've who'll who's who've why'll why're why's won't would've "
    "wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll you're you've"
).split()


def _contraction_table() -> dict[str, str]:
    table = {}
    for canonical in _CANONICAL_CONTRACTIONS:
        for i, char in enumerate(canonical):
            if char == "'":
                table[canonical[:i] + canonical[i + 1:]] = canonical
    return table


CONTRACTIONS: dict[str, str] = _contraction_table()

_COMMA_BETWEEN_DIGITS = re.compile(r"\d,\d")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")


def _process_punctuation(text: str) -> str:
    delete_all = _COMMA_BETWEEN_DIGITS.search(text) is not None
    out = text
    for mark in PUNCTUATION:
        touches_space = (mark + " ") in text or (" " + mark) in text
        out = out.replace(mark, "" if delete_all or touches_space else " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out)


def _process_words(text: str) -> str:
    words = []
    for word in text.lower().split():
        word = NUMBER_WORDS.get(word, word)
        if word not in ARTICLES:
            words.append(CONTRACTIONS.get(word, word))
    return " ".join(words)


def normalize_vqa_answer(text: str) -> str:
    """Official VQA answer normalisation (module docstring, steps 1-5)."""
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return _process_words(_process_punctuation(text))


def normalize_textvqa_answer(text: str) -> str:
    """TextVQA (LLaVA / MMF evaluator) normalisation: comma/'?' deletion, "'s" split, then VQA."""
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    return normalize_vqa_answer(text)
