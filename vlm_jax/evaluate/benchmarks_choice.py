"""Multiple-choice benchmark readers: MMBench TSV and ScienceQA ``problems.json``.

Records list the option texts in ``options`` (letter i = chr(ord("A") + i)), the correct letter
in ``answers`` (when known) and the prompt of the ``prompt`` format (default: the LLaVA multiple-choice
prompt of spec §6.5).
"""

from __future__ import annotations

import base64
import binascii
import csv
import os
import string

from vlm_jax.evaluate.benchmark_records import (
    MULTIPLE_CHOICE,
    BenchmarkRecord,
    PromptFormat,
    other_fields,
    read_json,
    require_keys,
    resolve_image,
)

_MISSING = ("", "nan", "none")  # how pandas-written TSVs spell an empty cell


def _cell(row: dict, key: str) -> str | None:
    value = row.get(key)
    return None if value is None or value.strip().lower() in _MISSING else value


def read_mmbench(path: str, prompt: PromptFormat = MULTIPLE_CHOICE) -> list[BenchmarkRecord]:
    """MMBench / MMBench-CN TSV (columns index, question, hint, A, B, C, D[, E, F], answer,
    category, image, ...). Options are the consecutive non-empty letter columns from "A"; the image
    is base64 in the ``image`` column, or (VLMEvalKit's circular files) the ``index`` of the row
    holding it. ``answer`` is absent on the test split."""
    csv.field_size_limit(2**31 - 1)  # base64 images exceed the 128 KiB default
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = {"index", "question", "A", "image"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}:1: header lacks column(s) {sorted(missing)}")
        rows = [(reader.line_num, row) for row in reader]
    image_of_index = {row["index"]: row["image"] for _, row in rows if len(row["image"]) > 64}
    records = []
    for line, row in rows:
        where = f"{path}:{line}"
        options = []
        for letter in string.ascii_uppercase:
            value = _cell(row, letter)
            if value is None:
                break
            options.append(value)
        if len(options) < 2:
            raise ValueError(f"{where}: fewer than two options in columns A, B, ...")
        encoded = row["image"]
        if len(encoded) <= 64 and encoded in image_of_index:
            encoded = image_of_index[encoded]
        try:
            image = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise ValueError(f"{where}: 'image' is neither base64 nor the index of a row with an "
                             f"image") from None
        hint, answer = _cell(row, "hint"), _cell(row, "answer")
        used = ("index", "question", "image", "answer", *string.ascii_uppercase)
        records.append(BenchmarkRecord(
            question_id=int(row["index"]) if row["index"].isdigit() else row["index"],
            image=image, question=row["question"],
            prompt=prompt(row["question"], options, hint),
            answers=(answer.strip(),) if answer else (), options=tuple(options),
            extra={k: v for k, v in other_fields(row, used).items() if k is not None}))
    return records


def read_scienceqa(path: str, split: str | None = "test", image_root: str | None = None,
                   images_only: bool = False, prompt: PromptFormat = MULTIPLE_CHOICE) -> list[BenchmarkRecord]:
    """ScienceQA ``problems.json`` ({pid: {question, choices, answer (index), hint, image, split,
    subject, ...}}), restricted to ``split`` (None: all). ``image_root`` is the folder holding the
    ``train/val/test/<pid>/image.png`` tree; ``images_only`` keeps the ScienceQA-IMG subset. The
    prompt prefixes a non-empty hint with "Context: " (LLaVA's ScienceQA layout)."""
    document = read_json(path)
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected a JSON object mapping problem ids to problems")
    records = []
    for pid, problem in document.items():
        where = f"{path}: problem {pid!r}"
        require_keys(problem, ("question", "choices", "answer", "split"), where)
        if split is not None and problem["split"] != split:
            continue
        if images_only and not problem.get("image"):
            continue
        choices, answer = problem["choices"], problem["answer"]
        if not isinstance(choices, list) or not choices:
            raise ValueError(f"{where}: 'choices' must be a non-empty list")
        if not isinstance(answer, int) or not 0 <= answer < len(choices):
            raise ValueError(f"{where}: 'answer' {answer!r} is not an index into {len(choices)} "
                             f"choices")
        image = problem.get("image")
        image_path = os.path.join(problem["split"], pid, image) if image else None
        hint = problem.get("hint")
        records.append(BenchmarkRecord(
            question_id=pid,
            image=resolve_image(image_root, image_path) if image_path else None,
            question=problem["question"],
            prompt=prompt(problem["question"], choices, f"Context: {hint}" if hint else None),
            answers=(chr(ord("A") + answer),), options=tuple(choices),
            extra=other_fields(problem, ("question", "choices", "answer", "image"))))
    return records
