"""The summary metric of each benchmark, computed from prediction rows (pure Python).

A prediction row is one line of an evaluation's ``predictions.jsonl`` (evaluate/harness.py):
``{"question_id", "prompt", "prediction", "answers", "options", "extra"}``. Rows without reference
answers (unlabelled test splits) are counted but not scored. The metric per benchmark (spec §6.5):

  textvqa              mean ``vqa_accuracy`` and mean ``textvqa_accuracy``
  docvqa               mean ``anls``
  chartqa              mean ``relaxed_accuracy`` against the single label
  mmbench, scienceqa   ``extract_choice`` then ``accuracy`` of the letter (and the ``unparsed`` fraction)
  pope                 ``pope_scores`` (f1 is the headline number)
  mme                  ``mme_scores`` (perception / cognition sums)
  entitygrid           ``entitygrid_scores`` (per task: all / edge / non_edge / discrepancy; overall)
  jsonl, tfds          ``exact_match``: the stripped, lowercased prediction equals one answer

Every summary also holds ``examples`` (rows) and ``scored`` (rows with answers).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from vlm_jax.evaluate.metrics import (
    anls,
    entitygrid_scores,
    extract_choice,
    mme_scores,
    pope_scores,
    relaxed_accuracy,
    textvqa_accuracy,
    vqa_accuracy,
)

BENCHMARKS = ("entitygrid", "textvqa", "docvqa", "chartqa", "pope", "mme", "mmbench", "scienceqa", "jsonl", "tfds")


def check_benchmark(benchmark: str) -> None:
    """Raise ValueError naming the known benchmarks when ``benchmark`` is not one of them."""
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; known: {', '.join(BENCHMARKS)}")


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _choice_scores(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    choices = [extract_choice(r["prediction"], list(r["options"])) for r in rows]
    return {"accuracy": _mean([float(c == r["answers"][0]) for c, r in zip(choices, rows)]),
            "unparsed": _mean([float(c is None) for c in choices])}


def _normalized(text: str) -> str:
    return text.strip().lower()


def _metrics(benchmark: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The benchmark's metric over labelled ``rows`` (module docstring)."""
    if benchmark == "textvqa":
        return {"vqa_accuracy": _mean([vqa_accuracy(r["prediction"], r["answers"]) for r in rows]),
                "textvqa_accuracy": _mean([textvqa_accuracy(r["prediction"], r["answers"]) for r in rows])}
    if benchmark == "docvqa":
        return {"anls": _mean([anls(r["prediction"], r["answers"]) for r in rows])}
    if benchmark == "chartqa":
        return {"relaxed_accuracy": _mean([relaxed_accuracy(r["prediction"], r["answers"][0]) for r in rows])}
    if benchmark in ("mmbench", "scienceqa"):
        return _choice_scores(rows)
    if benchmark == "pope":
        return pope_scores([r["prediction"] for r in rows], [r["answers"][0] for r in rows])
    if benchmark == "mme":
        return mme_scores([{"category": r["extra"]["category"], "image": r["extra"]["image_name"],
                            "prediction": r["prediction"], "answer": r["answers"][0]} for r in rows])
    if benchmark == "entitygrid":
        return entitygrid_scores([{"task": r["extra"]["task"], "edge": r["extra"]["edge"],
                                   "prediction": r["prediction"], "answer": r["answers"][0],
                                   "synonyms": list(r["answers"][1:])} for r in rows])
    return {"exact_match": _mean([float(_normalized(r["prediction"]) in {_normalized(a) for a in r["answers"]})
                                  for r in rows])}


def score_predictions(benchmark: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Summary of ``rows``: the benchmark's metric (module docstring), ``examples`` and ``scored``."""
    check_benchmark(benchmark)
    labelled = [r for r in rows if r["answers"]]
    metrics = _metrics(benchmark, labelled) if labelled else {}
    return {**metrics, "examples": len(rows), "scored": len(labelled)}
