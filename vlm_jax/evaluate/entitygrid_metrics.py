"""EntityGrid-QA scoring (HiRes-LLaVA benchmark; spec §4.3, project definitions).

An answer is correct when the normalised prediction equals the normalised answer or one of its
synonyms. Accuracy is reported per task (recognition / position / counting) x {edge, non_edge},
where "edge" entities are cut by a 2x2 slice boundary, and the fragmentation gap per task is
``discrepancy = acc_non_edge - acc_edge`` (lower is better). Every accuracy and discrepancy comes with a 95%
bootstrap interval (evaluate/bootstrap.py): questions resampled with replacement within each task x edge cell,
2,000 resamples by default, seeded.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence
from typing import Any

from vlm_jax.evaluate.bootstrap import DEFAULT_RESAMPLES, percentile_interval, resampled_means
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


def _pooled(cells: Mapping[tuple[str, bool], Any], sizes: Mapping[tuple[str, bool], int], keys) -> Any:
    """Accuracy over the union of `keys` cells from per-cell accuracies (scalars or per-resample arrays)."""
    total = sum(sizes[k] for k in keys)
    if not total:
        return math.nan
    return sum(cells[k] * sizes[k] for k in keys if sizes[k]) / total


def entitygrid_scores(records: Sequence[Mapping[str, Any]], *, resamples: int = DEFAULT_RESAMPLES,
                      seed: int = 0) -> dict:
    """EntityGrid-QA accuracies from records with keys ``task`` ("recognition" | "position" |
    "counting"), ``edge`` (bool), ``prediction``, ``answer`` and optional ``synonyms`` (list).

    Returns ``{task: {"edge", "non_edge", "all", "discrepancy", "n_edge", "n_non_edge", "ci95"}, ...,
    "overall": accuracy over all records, "overall_ci95", "bootstrap"}`` with all three tasks present;
    ``ci95`` maps "edge", "non_edge", "all" and "discrepancy" to their 95% bootstrap interval ``[low, high]``
    (``resamples`` resamples of the questions within each task x edge cell, from ``seed``; the settings are
    echoed in ``bootstrap``). An accuracy over zero records (and a discrepancy using it) is NaN, and so are
    its interval bounds.
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
    sizes = {key: len(flags) for key, flags in cells.items()}
    resampled = resampled_means(cells, resamples, seed)
    scores: dict[str, Any] = {}
    for task in ENTITYGRID_TASKS:
        edge, non_edge = (task, True), (task, False)
        scores[task] = {
            "edge": _accuracy(cells[edge]),
            "non_edge": _accuracy(cells[non_edge]),
            "all": _accuracy(cells[edge] + cells[non_edge]),
            "discrepancy": _accuracy(cells[non_edge]) - _accuracy(cells[edge]),
            "n_edge": sizes[edge],
            "n_non_edge": sizes[non_edge],
            "ci95": {"edge": percentile_interval(resampled[edge]),
                     "non_edge": percentile_interval(resampled[non_edge]),
                     "all": percentile_interval(_pooled(resampled, sizes, (edge, non_edge))),
                     "discrepancy": percentile_interval(resampled[non_edge] - resampled[edge])},
        }
    scores["overall"] = _accuracy([flag for flags in cells.values() for flag in flags])
    scores["overall_ci95"] = percentile_interval(_pooled(resampled, sizes, list(cells)))
    scores["bootstrap"] = {"resamples": resamples, "seed": seed, "strata": "task x edge",
                           "interval": "95% percentile"}
    return scores
