"""Per-question benchmark metrics (pure Python) and the public metrics namespace.

Open-ended answers: ``vqa_accuracy`` / ``textvqa_accuracy`` (VQAv2, TextVQA, VizWiz), ``anls``
(DocVQA, InfographicVQA), ``relaxed_accuracy`` (ChartQA). Multiple choice: ``extract_choice``
(choice_extraction.py). Dataset-level scores: ``pope_scores``, ``mme_scores`` (yes_no_metrics.py)
and ``entitygrid_scores`` (entitygrid_metrics.py, spec §4.3) are re-exported here so users import
every metric from ``vlm_jax.evaluate.metrics``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from vlm_jax.evaluate.choice_extraction import extract_choice
from vlm_jax.evaluate.entitygrid_metrics import entitygrid_scores
from vlm_jax.evaluate.vqa_normalize import normalize_textvqa_answer, normalize_vqa_answer
from vlm_jax.evaluate.yes_no_metrics import mme_scores, pope_scores

__all__ = [
    "anls", "entitygrid_scores", "extract_choice", "levenshtein_distance", "mme_scores",
    "pope_scores", "relaxed_accuracy", "textvqa_accuracy", "vqa_accuracy",
]


def _leave_one_out_accuracy(prediction: str, answers: Sequence[str],
                            normalize: Callable[[str], str]) -> float:
    if isinstance(answers, str) or len(answers) == 0:
        raise ValueError(f"answers must be a non-empty list of strings, got {answers!r}")
    pred = normalize(prediction)
    refs = [normalize(a) for a in answers]
    if len(refs) == 1:
        return float(pred == refs[0])
    total_matches = sum(ref == pred for ref in refs)
    # Leaving out answer i removes one match exactly when answer i itself matches.
    subset_scores = [min(1.0, (total_matches - (ref == pred)) / 3.0) for ref in refs]
    return sum(subset_scores) / len(subset_scores)


def vqa_accuracy(prediction: str, answers: list[str]) -> float:
    """Official VQA accuracy of one prediction against the human answers.

    Both sides are normalised (vqa_normalize.py). With n >= 2 answers the score is the mean over
    the n leave-one-out subsets of ``min(#subset answers equal to the prediction / 3, 1)``; for the
    standard 10 answers this is the "average over all 10 choose 9 sets" of visualqa.org. The same
    formula is applied to other lengths (with 2 answers a prediction matching both scores 1/3), and
    a single answer is scored by exact match after normalisation. Unlike the official script, which
    skips normalisation when all 10 answers are identical, normalisation is always applied (as the
    TextVQA evaluator and LLaVA's VQAv2 submission converter do).
    """
    return _leave_one_out_accuracy(prediction, answers, normalize_vqa_answer)


def textvqa_accuracy(prediction: str, answers: list[str]) -> float:
    """``vqa_accuracy`` with the TextVQA evaluator's normalisation (``normalize_textvqa_answer``),
    as in LLaVA's TextVQA evaluation."""
    return _leave_one_out_accuracy(prediction, answers, normalize_textvqa_answer)


def levenshtein_distance(a: str, b: str) -> int:
    """Minimum number of single-character insertions, deletions and substitutions (a -> b)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def anls(prediction: str, answers: list[str], threshold: float = 0.5) -> float:
    """Average Normalized Levenshtein Similarity of one prediction (DocVQA / InfographicVQA).

    Follows the official DocVQA evaluation script: both strings are lowercased, stripped and their
    whitespace runs collapsed; NL = edit distance / max(len) where the lengths are those of the raw
    strings; the question score is ``1 - min_answers NL`` and becomes 0 when it is below
    ``threshold`` (a similarity of exactly 0.5 is kept).
    """
    if isinstance(answers, str) or len(answers) == 0:
        raise ValueError(f"answers must be a non-empty list of strings, got {answers!r}")
    pred = " ".join(prediction.strip().lower().split())
    distances = []
    for answer in answers:
        ref = " ".join(answer.strip().lower().split())
        length = max(len(answer), len(prediction))
        distances.append(0.0 if length == 0 else levenshtein_distance(ref, pred) / length)
    score = 1.0 - min(distances)
    return 0.0 if score < threshold else score


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _parse_chartqa_number(text: str) -> float | None:
    text = re.sub(r"(?<=\d),(?=\d)", "", text.strip())
    percent = text.endswith("%")
    if percent:
        text = text[:-1].rstrip()
    if not _NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value / 100.0 if percent else value


def relaxed_accuracy(prediction: str, target: str, tolerance: float = 0.05) -> float:
    """ChartQA relaxed accuracy (Masry et al. 2022; pix2struct's ``relaxed_correctness``).

    When both strings are numbers (thousands commas allowed; a trailing "%" divides by 100) and
    the target is non-zero, the prediction is correct iff ``|pred - target| / |target| <=
    tolerance``. Otherwise the stripped strings must match case-insensitively. Returns 1.0 or 0.0.
    """
    pred_value = _parse_chartqa_number(prediction)
    target_value = _parse_chartqa_number(target)
    if pred_value is not None and target_value:
        return float(abs(pred_value - target_value) / abs(target_value) <= tolerance)
    return float(prediction.strip().lower() == target.strip().lower())
