"""EntityGrid-QA scoring (HiRes-LLaVA benchmark; spec §4.3, project definitions).

An answer is correct when the normalised prediction equals the normalised answer or one of its
synonyms. Accuracy is reported per task (recognition / position / counting) x {edge, non_edge},
where "edge" entities lie on a 2x2 slice boundary, and the fragmentation gap per task is
``discrepancy = acc_non_edge - acc_edge`` (lower is better).
"""

from __future__ import annotations

import math
import string
from typing import Any, Mapping, Sequence

from vlm_jax.evaluate.vqa_normalize import NUMBER_WORDS

ENTITYGRID_TASKS = ("recognition", "position", "counting")
_PUNCTUATION_TO_SPACE = str.maketrans({c: " " for c in string.punctuation})


def normalize_entitygrid_answer(text: str) -> str:
    """Lowercase, punctuation -> space ("top-left" == "top left"), whitespace collapsed, number
    words "none"/"zero".."ten" -> digits."""
    words = text.lower().translate(_PUNCTUATION_TO_SPACE).split()
    return " ".join(NUMBER_WORDS.get(w, w) for w in words)


def entitygrid_is_correct(prediction: str, answer: str, synonyms: Sequence[str] = ()) -> bool:
    """Exact match of the normalised prediction against the answer or any synonym."""
    accepted = {normalize_entitygrid_answer(a) for a in (answer, *synonyms)}
    return normalize_entitygrid_answer(prediction) in accepted


def _accuracy(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else math.nan


def entitygrid_scores(records: Sequence[Mapping[str, Any]]) -> dict:
    """EntityGrid-QA accuracies from records with keys ``task`` ("recognition" | "position" |
    "counting"), ``edge`` (bool), ``prediction``, ``answer`` and optional ``synonyms`` (list).

    Returns ``{task: {"edge", "non_edge", "all", "discrepancy", "n_edge", "n_non_edge"}, ...,
    "overall": accuracy over all records}`` with all three tasks present; an accuracy over zero
    records (and a discrepancy using it) is NaN.
    """
    if not records:
        raise ValueError("entitygrid_scores needs at least one record")
    cells: dict[tuple[str, bool], list[bool]] = {(t, e): [] for t in ENTITYGRID_TASKS
                                                for e in (True, False)}
    for i, record in enumerate(records):
        missing = {"task", "edge", "prediction", "answer"} - set(record)
        if missing:
            raise ValueError(f"records[{i}] is missing keys {sorted(missing)}")
        task, edge = record["task"], record["edge"]
        if task not in ENTITYGRID_TASKS:
            raise ValueError(f"records[{i}]: task must be one of {ENTITYGRID_TASKS}, got {task!r}")
        if not isinstance(edge, bool):
            raise ValueError(f"records[{i}]: edge must be a bool, got {edge!r}")
        synonyms = record.get("synonyms") or ()
        if isinstance(synonyms, str):
            raise ValueError(f"records[{i}]: synonyms must be a list of strings, got {synonyms!r}")
        cells[task, edge].append(
            entitygrid_is_correct(record["prediction"], record["answer"], synonyms))
    scores: dict[str, Any] = {}
    for task in ENTITYGRID_TASKS:
        edge, non_edge = cells[task, True], cells[task, False]
        scores[task] = {
            "edge": _accuracy(edge),
            "non_edge": _accuracy(non_edge),
            "all": _accuracy(edge + non_edge),
            "discrepancy": _accuracy(non_edge) - _accuracy(edge),
            "n_edge": len(edge),
            "n_non_edge": len(non_edge),
        }
    scores["overall"] = _accuracy([flag for flags in cells.values() for flag in flags])
    return scores
