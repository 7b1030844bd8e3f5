"""The summary metric of each benchmark, computed from labelled prediction rows (pure Python).

A prediction row is one line of an evaluation's ``predictions.jsonl`` (evaluate/harness.py):
``{"question_id", "prompt", "prediction", "answers", "options", "extra"}``. Each function here takes the
rows that have reference answers (``Benchmark.score`` in benchmark_registry.py drops the others and counts
both) and returns the benchmark's metrics (spec §6.5); which benchmark uses which is in the registry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from vlm_jax.evaluate import metrics

Rows = Sequence[Mapping[str, Any]]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def vqa_metrics(rows: Rows) -> dict[str, float]:
    """Mean ``vqa_accuracy`` and mean ``textvqa_accuracy`` (TextVQA)."""
    return {"vqa_accuracy": _mean([metrics.vqa_accuracy(r["prediction"], r["answers"]) for r in rows]),
            "textvqa_accuracy": _mean([metrics.textvqa_accuracy(r["prediction"], r["answers"]) for r in rows])}


def anls_metric(rows: Rows) -> dict[str, float]:
    """Mean ``anls`` (DocVQA)."""
    return {"anls": _mean([metrics.anls(r["prediction"], r["answers"]) for r in rows])}


def relaxed_accuracy_metric(rows: Rows) -> dict[str, float]:
    """Mean ``relaxed_accuracy`` against the single label (ChartQA)."""
    return {"relaxed_accuracy": _mean([metrics.relaxed_accuracy(r["prediction"], r["answers"][0]) for r in rows])}


def choice_metrics(rows: Rows) -> dict[str, float]:
    """``extract_choice`` then ``accuracy`` of the letter, and the ``unparsed`` fraction (MMBench, ScienceQA)."""
    choices = [metrics.extract_choice(r["prediction"], list(r["options"])) for r in rows]
    return {"accuracy": _mean([float(c == r["answers"][0]) for c, r in zip(choices, rows)]),
            "unparsed": _mean([float(c is None) for c in choices])}


def pope_metrics(rows: Rows) -> dict[str, float]:
    """``pope_scores`` (f1 is the headline number)."""
    return metrics.pope_scores([r["prediction"] for r in rows], [r["answers"][0] for r in rows])


def mme_metrics(rows: Rows) -> dict[str, Any]:
    """``mme_scores`` (perception / cognition sums), grouped by ``extra`` category and image name."""
    return metrics.mme_scores([{"category": r["extra"]["category"], "image": r["extra"]["image_name"],
                                "prediction": r["prediction"], "answer": r["answers"][0]} for r in rows])


def entitygrid_metrics(rows: Rows) -> dict[str, Any]:
    """``entitygrid_scores`` (per task: all / edge / non_edge / discrepancy; overall); answers after the first
    are synonyms."""
    return metrics.entitygrid_scores([{"task": r["extra"]["task"], "edge": r["extra"]["edge"],
                                       "prediction": r["prediction"], "answer": r["answers"][0],
                                       "synonyms": list(r["answers"][1:])} for r in rows])


def _normalized(text: str) -> str:
    return text.strip().lower()


def exact_match_metric(rows: Rows) -> dict[str, float]:
    """``exact_match``: the stripped, lowercased prediction equals one answer."""
    return {"exact_match": _mean([float(_normalized(r["prediction"]) in {_normalized(a) for a in r["answers"]})
                                  for r in rows])}
