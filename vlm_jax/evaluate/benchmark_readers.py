"""The records of one evaluation: a benchmark name and its file(s) on disk → ``BenchmarkRecord`` list.

Nothing is downloaded. ``entitygrid`` is generated: the test split described by the run config's
``data.eval_source`` (or, when it has none, its EntityGrid train ``data.source`` switched to the test
split), optionally resized. ``jsonl`` is a LLaVA question file (``read_llava_questions``) whose lines
may carry reference ``answers`` (a list) or ``answer`` (a string) for exact-match scoring. ``mme``
reads the release folder (``read_mme``) or, when it holds no subtask folder, eval_tool txt files
(``read_mme_txt``). The other names map to their readers in benchmarks.py.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from vlm_jax.data.build import build_source
from vlm_jax.data.sources import TfdsSource
from vlm_jax.data.templates import IMAGE_PLACEHOLDER
from vlm_jax.evaluate.benchmark_scoring import check_benchmark
from vlm_jax.evaluate.benchmarks import (
    BenchmarkRecord,
    read_chartqa,
    read_docvqa,
    read_llava_questions,
    read_mmbench,
    read_mme,
    read_mme_txt,
    read_pope,
    read_scienceqa,
    read_textvqa,
)
from vlm_jax.evaluate.yes_no_metrics import MME_COGNITION, MME_PERCEPTION

_FILE_READERS = {"textvqa": read_textvqa, "docvqa": read_docvqa, "chartqa": read_chartqa, "pope": read_pope,
                 "scienceqa": lambda path, root: read_scienceqa(path, image_root=root)}


def entitygrid_records(source: Sequence[dict[str, Any]]) -> list[BenchmarkRecord]:
    """EntityGrid-QA raw examples (data/entitygrid.py) as records: the prompt is the training human turn
    without its leading ``<image>`` line, ``answers`` the accepted answers (canonical first), ``extra``
    the task, edge flag, asked position and category."""
    records = []
    for i in range(len(source)):
        raw = source[i]
        if "meta" not in raw or "task" not in raw["meta"]:
            raise ValueError(f"example {i} ({raw.get('id')!r}) is not an EntityGrid-QA example (no meta.task)")
        meta, question = raw["meta"], raw["conversations"][0]["value"]
        prefix = f"{IMAGE_PLACEHOLDER}\n"
        if not question.startswith(prefix):
            raise ValueError(f"example {raw['id']!r}: the question does not start with {prefix!r}")
        records.append(BenchmarkRecord(
            question_id=raw["id"], image=raw["image"], question=question[len(prefix):],
            prompt=question[len(prefix):], answers=tuple(meta["accepted_answers"]),
            extra={"task": meta["task"], "edge": bool(meta["edge"]), "position": meta["position"],
                   "category": meta["category"]}))
    return records


def conversation_records(source: Sequence[dict[str, Any]]) -> list[BenchmarkRecord]:
    """Raw conversation examples (the data contract; e.g. a TFDS data source in ``tfds_features`` format) as
    records: the first human turn (without ``<image>``) is the question, the first answer the reference."""
    records = []
    for i in range(len(source)):
        raw = source[i]
        turns = raw.get("conversations") or []
        human = next((t["value"] for t in turns if t["from"] == "human"), None)
        if human is None:
            raise ValueError(f"example {i} ({raw.get('id')!r}) has no human turn")
        answers = tuple(t["value"] for t in turns if t["from"] == "gpt")[:1]
        question = human.replace(IMAGE_PLACEHOLDER, "").strip()
        records.append(BenchmarkRecord(question_id=raw["id"], image=raw["image"], question=question, prompt=question,
                                       answers=answers, extra=dict(raw.get("meta") or {})))
    return records


def entitygrid_test_source(config, size: int | None = None) -> dict[str, Any]:
    """The source config of the generated test split of a run ``config`` (module docstring)."""
    data = config.data
    source = data.get("eval_source") or data.source
    source = dict(source.to_dict() if hasattr(source, "to_dict") else source)
    if source.get("kind") != "entitygrid":
        raise ValueError(f"the config has no EntityGrid source to evaluate (data.eval_source / data.source kind "
                         f"is {source.get('kind')!r})")
    if not data.get("eval_source"):
        source["split"] = "test"
    if size is not None:
        source["size"] = size
    return source


def _with_reference_answers(record: BenchmarkRecord) -> BenchmarkRecord:
    """A LLaVA question record with the ``answers`` / ``answer`` field of its line as reference answers."""
    extra = dict(record.extra)
    if "answers" in extra:
        answers = extra.pop("answers")
    elif "answer" in extra:
        answers = [extra.pop("answer")]
    else:
        return record
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise ValueError(f"question {record.question_id!r}: answers must be strings, got {answers!r}")
    return dataclasses.replace(record, answers=tuple(answers), extra=extra)


def _read_mme(path: str, image_root: str | None) -> list[BenchmarkRecord]:
    if any(os.path.isdir(os.path.join(path, s)) for s in MME_PERCEPTION + MME_COGNITION):
        return read_mme(path)
    return read_mme_txt(path, image_root)


def load_benchmark(benchmark: str, data: str | None = None, image_root: str | None = None, *,
                   config=None, size: int | None = None) -> list[BenchmarkRecord]:
    """Records of ``benchmark`` read from ``data`` (a file or, for MME, a folder; for ``tfds`` ``NAME:SPLIT``
    with ``image_root`` as the TFDS data_dir); ``entitygrid`` takes the run ``config`` and an optional ``size``."""
    check_benchmark(benchmark)
    if benchmark == "entitygrid":
        if data is not None or config is None:
            raise ValueError("entitygrid is generated from the run config (pass config, not data)")
        return entitygrid_records(build_source(entitygrid_test_source(config, size)))
    if data is None:
        raise ValueError(f"benchmark {benchmark!r} needs its data file (--data)")
    if benchmark == "tfds":  # --data=NAME:SPLIT, --image_root = the TFDS data_dir (optional)
        name, sep, split = data.partition(":")
        if not sep:
            raise ValueError(f"tfds benchmarks take --data=NAME:SPLIT, got {data!r}")
        return conversation_records(TfdsSource(name, split, image_root))
    if not os.path.exists(data):
        raise FileNotFoundError(f"benchmark data {data!r} not found")
    if benchmark == "mmbench":
        return read_mmbench(data)
    if benchmark == "mme":
        return _read_mme(data, image_root)
    if benchmark == "jsonl":
        return [_with_reference_answers(r) for r in read_llava_questions(data, image_root)]
    return _FILE_READERS[benchmark](data, image_root)
