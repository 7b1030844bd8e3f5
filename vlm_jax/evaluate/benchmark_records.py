"""The common benchmark record, the prompt formats of spec §6.5 and file-reading helpers shared by the
benchmark readers (benchmarks.py, benchmarks_choice.py, benchmarks_mme.py, benchmark_readers.py)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

SHORT_ANSWER_SUFFIX = "Answer the question using a single word or phrase."
MULTIPLE_CHOICE_SUFFIX = "Answer with the option's letter from the given choices directly."


@dataclasses.dataclass(frozen=True)
class BenchmarkRecord:
    """One benchmark question.

    question_id: the benchmark's own id (int or str, as in the file) so predictions can be written
      back in the format the official scorer expects.
    image: path of the image file (joined with ``image_root`` when given), or encoded image bytes
      (MMBench TSV), or None for text-only questions (ScienceQA).
    question: the question as written in the benchmark.
    prompt: the full text given to the model (without the image placeholder).
    answers: reference answers (VQA: 10 human answers; POPE/MME: "yes"/"no" label; multiple choice:
      the correct letter); empty for unlabelled test splits.
    options: option texts of a multiple-choice question, option i has letter chr(ord("A") + i).
    extra: every other field of the source entry (category, hint, split, ...).
    """

    question_id: int | str
    image: str | bytes | None
    question: str
    prompt: str
    answers: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class PromptFormat:
    """How a benchmark question becomes the model prompt (spec §6.5, LLaVA's layout): the hint (when given),
    the question, one ``"A. option"`` line per option, then ``suffix`` (when set), joined by newlines."""

    name: str
    suffix: str | None = None

    def __call__(self, question: str, options: Sequence[str] = (), hint: str | None = None) -> str:
        lines = [hint] if hint else []
        lines.append(question)
        lines += [f"{chr(ord('A') + i)}. {option}" for i, option in enumerate(options)]
        if self.suffix:
            lines.append(self.suffix)
        return "\n".join(lines)


SHORT_ANSWER = PromptFormat("short_answer", SHORT_ANSWER_SUFFIX)  # open-ended and yes/no questions
MULTIPLE_CHOICE = PromptFormat("multiple_choice", MULTIPLE_CHOICE_SUFFIX)  # option letters
VERBATIM = PromptFormat("verbatim")  # the question already is the final prompt (LLaVA question files)


def resolve_image(image_root: str | None, name: str) -> str:
    """``name`` joined to ``image_root`` (unchanged when no root is given)."""
    return os.path.join(image_root, name) if image_root else name


def require_keys(entry: Any, keys: Sequence[str], where: str) -> None:
    """Raise ValueError naming ``where`` when ``entry`` is not a dict holding all ``keys``."""
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(entry).__name__}")
    missing = [k for k in keys if k not in entry]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}; present: {sorted(entry)}")


def read_json_lines(path: str) -> Iterator[tuple[str, Any]]:
    """(``"path:line"``, parsed value) for each non-blank line of a JSON-lines file."""
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: invalid JSON ({e.msg})") from None
            yield where, entry


def read_json(path: str) -> Any:
    """The parsed JSON document; a syntax error names the file and line."""
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


def other_fields(entry: Mapping[str, Any], used: Sequence[str]) -> dict[str, Any]:
    """The fields of ``entry`` not in ``used`` (kept as a record's ``extra``)."""
    return {k: v for k, v in entry.items() if k not in used}
