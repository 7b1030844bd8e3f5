"""Readers turning benchmark files on disk into a common ``BenchmarkRecord`` (pure Python).

Nothing is downloaded: every reader takes the path of a file the caller already has and an
optional ``image_root`` joined in front of relative image names. Each record carries the exact
model prompt, made by the reader's ``prompt`` format (benchmark_records.py; the default is the one of
spec §6.5): open-ended and yes/no questions get the short-answer suffix, multiple-choice questions
list their options and get the option-letter suffix; LLaVA question files already hold the final
prompt and are used verbatim. Malformed input raises ``ValueError``
naming the file and the line (JSON lines, TSV, txt) or the entry index (JSON documents).

The record type and prompts are in benchmark_records.py; the multiple-choice (MMBench, ScienceQA)
and MME readers in benchmarks_choice.py and benchmarks_mme.py; all are re-exported here.
"""

from __future__ import annotations

import os
from typing import Any

from vlm_jax.evaluate.benchmark_records import (
    MULTIPLE_CHOICE,
    SHORT_ANSWER,
    VERBATIM,
    BenchmarkRecord,
    PromptFormat,
    other_fields,
    read_json,
    read_json_lines,
    require_keys,
    resolve_image,
)
from vlm_jax.evaluate.benchmarks_choice import read_mmbench, read_scienceqa
from vlm_jax.evaluate.benchmarks_mme import read_mme, read_mme_txt


def _data_list(path: str, document: Any) -> list:
    """The ``data`` list of a TextVQA / DocVQA style annotation document."""
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise ValueError(f"{path}: expected a JSON object with a 'data' list")
    return document["data"]


def _answers(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise ValueError(f"{where}: 'answers' must be a list of strings, got {value!r}")
    return tuple(value)


def read_llava_questions(path: str, image_root: str | None = None,
                         prompt: PromptFormat = VERBATIM) -> list[BenchmarkRecord]:
    """LLaVA evaluation question file (JSON lines with question_id, image, text[, category]).

    ``text`` is already the final prompt (e.g. TextVQA OCR-token prompts, suffixes included), so it
    is used verbatim as both question and prompt. Lines without "image" are text-only."""
    records = []
    for where, entry in read_json_lines(path):
        require_keys(entry, ("question_id", "text"), where)
        image = entry.get("image")
        records.append(BenchmarkRecord(
            question_id=entry["question_id"],
            image=resolve_image(image_root, image) if image else None,
            question=entry["text"], prompt=prompt(entry["text"]),
            extra=other_fields(entry, ("question_id", "image", "text"))))
    return records


def read_pope(path: str, image_root: str | None = None, prompt: PromptFormat = SHORT_ANSWER) -> list[BenchmarkRecord]:
    """POPE question/label file (JSON lines with question_id, image, text, label "yes"/"no")."""
    records = []
    for where, entry in read_json_lines(path):
        require_keys(entry, ("question_id", "image", "text", "label"), where)
        label = str(entry["label"]).strip().lower()
        if label not in ("yes", "no"):
            raise ValueError(f"{where}: label must be 'yes' or 'no', got {entry['label']!r}")
        records.append(BenchmarkRecord(
            question_id=entry["question_id"], image=resolve_image(image_root, entry["image"]),
            question=entry["text"], prompt=prompt(entry["text"]), answers=(label,),
            extra=other_fields(entry, ("question_id", "image", "text", "label"))))
    return records


def read_textvqa(path: str, image_root: str | None = None,
                 prompt: PromptFormat = SHORT_ANSWER) -> list[BenchmarkRecord]:
    """TextVQA annotation JSON (``TextVQA_0.5.1_{train,val,test}.json``): {"data": [{question_id,
    question, image_id, answers (absent on test), ...}]}; the image is ``{image_id}.jpg``."""
    records = []
    for i, entry in enumerate(_data_list(path, read_json(path))):
        where = f"{path}: data[{i}]"
        require_keys(entry, ("question_id", "question", "image_id"), where)
        records.append(BenchmarkRecord(
            question_id=entry["question_id"],
            image=resolve_image(image_root, f"{entry['image_id']}.jpg"),
            question=entry["question"], prompt=prompt(entry["question"]),
            answers=_answers(entry["answers"], where) if "answers" in entry else (),
            extra=other_fields(entry, ("question_id", "question", "answers"))))
    return records


def read_docvqa(path: str, image_root: str | None = None,
                prompt: PromptFormat = SHORT_ANSWER) -> list[BenchmarkRecord]:
    """DocVQA / InfographicVQA annotation JSON: {"data": [{questionId, question, image (DocVQA,
    e.g. "documents/x.png") or image_local_name (InfographicVQA), answers (absent on test)}]}."""
    records = []
    for i, entry in enumerate(_data_list(path, read_json(path))):
        where = f"{path}: data[{i}]"
        require_keys(entry, ("questionId", "question"), where)
        image_key = "image" if "image" in entry else "image_local_name"
        require_keys(entry, (image_key,), where)
        records.append(BenchmarkRecord(
            question_id=entry["questionId"], image=resolve_image(image_root, entry[image_key]),
            question=entry["question"], prompt=prompt(entry["question"]),
            answers=_answers(entry["answers"], where) if "answers" in entry else (),
            extra=other_fields(entry, ("questionId", "question", image_key, "answers"))))
    return records


def read_chartqa(path: str, image_root: str | None = None,
                 prompt: PromptFormat = SHORT_ANSWER) -> list[BenchmarkRecord]:
    """ChartQA split file (``test_human.json`` / ``test_augmented.json``): a list of {imgname,
    query, label}. ChartQA has no question ids: the id is "<file stem>/<index>"."""
    document = read_json(path)
    if not isinstance(document, list):
        raise ValueError(f"{path}: expected a JSON list of {{imgname, query, label}} objects")
    stem = os.path.splitext(os.path.basename(path))[0]
    records = []
    for i, entry in enumerate(document):
        require_keys(entry, ("imgname", "query", "label"), f"{path}: entry {i}")
        records.append(BenchmarkRecord(
            question_id=f"{stem}/{i}", image=resolve_image(image_root, entry["imgname"]),
            question=entry["query"], prompt=prompt(entry["query"]),
            answers=(str(entry["label"]),),
            extra=other_fields(entry, ("imgname", "query", "label"))))
    return records


__all__ = [
    "BenchmarkRecord", "MULTIPLE_CHOICE", "PromptFormat", "SHORT_ANSWER", "VERBATIM", "read_chartqa", "read_docvqa",
    "read_llava_questions", "read_mme", "read_mme_txt", "read_mmbench", "read_pope", "read_scienceqa", "read_textvqa",
]
