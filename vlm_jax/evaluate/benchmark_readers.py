"""Benchmark readers with one signature, ``reader(request, prompt) -> list[BenchmarkRecord]``, as the registry
(benchmark_registry.py) calls them; a :class:`BenchmarkRequest` holds what the user gave (``--data``,
``--image_root``, the run config, ``--eval_size``).

Nothing is downloaded. ``entitygrid`` is generated: the test split described by the run config's
``data.eval_source`` (or, when it has none, its EntityGrid train ``data.source`` switched to the test
split), optionally resized. ``jsonl`` is a LLaVA question file (``read_llava_questions``) whose lines
may carry reference ``answers`` (a list) or ``answer`` (a string) for exact-match scoring. ``mme``
reads the release folder (``read_mme``) or, when it holds no subtask folder, eval_tool txt files
(``read_mme_txt``). ``tfds`` reads ``NAME:SPLIT`` of a TFDS data source in the data contract's format. The
other benchmarks read their file with their reader in benchmarks.py / benchmarks_choice.py.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

from vlm_jax.data.sources import TfdsSource
from vlm_jax.data.templates import IMAGE_PLACEHOLDER
from vlm_jax.evaluate.benchmark_records import VERBATIM, BenchmarkRecord, PromptFormat
from vlm_jax.evaluate.benchmarks import read_llava_questions, read_mme, read_mme_txt
from vlm_jax.evaluate.yes_no_metrics import MME_COGNITION, MME_PERCEPTION
from vlm_jax.run_config.build_data import build_source


@dataclasses.dataclass(frozen=True)
class BenchmarkRequest:
    """What an evaluation was given: ``data`` (a file, a folder or ``NAME:SPLIT``), ``image_root``, the run
    ``config`` (ml_collections) and ``size`` (examples of a generated benchmark)."""

    benchmark: str
    data: str | None = None
    image_root: str | None = None
    config: Any = None
    size: int | None = None

    def data_path(self) -> str:
        """``data``, which must name an existing file or folder."""
        if self.data is None:
            raise ValueError(f"benchmark {self.benchmark!r} needs its data file (--data)")
        if not os.path.exists(self.data):
            raise FileNotFoundError(f"benchmark data {self.data!r} not found")
        return self.data


Reader = Callable[[BenchmarkRequest, PromptFormat], list[BenchmarkRecord]]


def file_reader(read: Callable[..., list[BenchmarkRecord]], *, image_root: bool = True) -> Reader:
    """A reader of ``read(path[, image_root], prompt=...)`` (benchmarks.py) on the request's data file."""
    if image_root:
        return lambda request, prompt: read(request.data_path(), image_root=request.image_root, prompt=prompt)
    return lambda request, prompt: read(request.data_path(), prompt=prompt)


def entitygrid_records(source: Sequence[dict[str, Any]], prompt: PromptFormat = VERBATIM) -> list[BenchmarkRecord]:
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
            prompt=prompt(question[len(prefix):]), answers=tuple(meta["accepted_answers"]),
            extra={"task": meta["task"], "edge": bool(meta["edge"]), "position": meta["position"],
                   "category": meta["category"]}))
    return records


def conversation_records(source: Sequence[dict[str, Any]], prompt: PromptFormat = VERBATIM) -> list[BenchmarkRecord]:
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
        records.append(BenchmarkRecord(question_id=raw["id"], image=raw["image"], question=question,
                                       prompt=prompt(question), answers=answers, extra=dict(raw.get("meta") or {})))
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


def read_entitygrid(request: BenchmarkRequest, prompt: PromptFormat) -> list[BenchmarkRecord]:
    """The generated EntityGrid-QA test split of the request's run config."""
    if request.config is None:
        raise ValueError("entitygrid is generated from the run config (pass config, not data)")
    return entitygrid_records(build_source(entitygrid_test_source(request.config, request.size)), prompt)


def read_tfds(request: BenchmarkRequest, prompt: PromptFormat) -> list[BenchmarkRecord]:
    """``--data=NAME:SPLIT`` of a TFDS data source; ``--image_root`` is the TFDS data_dir (optional)."""
    if request.data is None:
        raise ValueError(f"benchmark {request.benchmark!r} needs its data (--data=NAME:SPLIT)")
    name, sep, split = request.data.partition(":")
    if not sep:
        raise ValueError(f"tfds benchmarks take --data=NAME:SPLIT, got {request.data!r}")
    return conversation_records(TfdsSource(name, split, request.image_root), prompt)


def with_reference_answers(record: BenchmarkRecord) -> BenchmarkRecord:
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


def read_jsonl(request: BenchmarkRequest, prompt: PromptFormat) -> list[BenchmarkRecord]:
    """A LLaVA question file whose lines may carry reference answers."""
    return [with_reference_answers(r) for r in read_llava_questions(request.data_path(), request.image_root, prompt)]


def read_mme_any(request: BenchmarkRequest, prompt: PromptFormat) -> list[BenchmarkRecord]:
    """The MME release folder, or (no subtask folder in it) a folder of eval_tool ``<subtask>.txt`` files whose
    images are in the release folder ``--image_root``."""
    path = request.data_path()
    if any(os.path.isdir(os.path.join(path, s)) for s in MME_PERCEPTION + MME_COGNITION):
        if request.image_root is not None:
            raise ValueError(f"{path} is the MME release folder, which holds the images: --image_root is only for a "
                             "folder of eval_tool <subtask>.txt files")
        return read_mme(path, prompt)
    return read_mme_txt(path, request.image_root, prompt)
