"""Dataset-level scores of the yes/no benchmarks POPE (Li et al. 2023) and MME (Fu et al. 2023).

POPE reports F1 as its headline number (spec §6.5); MME reports the sum of per-subtask scores
``(acc + acc+) * 100`` over its perception and cognition subtasks (spec §6.6, MME-P / MME-C).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

MME_PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene",
                  "landmark", "artwork", "OCR")
MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation",
                 "code_reasoning")


def _parse_yes_no_label(label: str, where: str) -> str:
    value = label.strip().lower()
    if value not in ("yes", "no"):
        raise ValueError(f"{where}: label must be 'yes' or 'no', got {label!r}")
    return value


def pope_answer_is_yes(text: str) -> bool:
    """POPE's reply parsing (official evaluate.py): keep the text before the first '.', delete
    commas, split on single spaces; the reply is "no" when a word is exactly "No", "no" or "not",
    otherwise it is "yes"."""
    words = text.split(".")[0].replace(",", "").split(" ")
    return not ({"No", "no", "not"} & set(words))


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def pope_scores(predictions: list[str], labels: list[str]) -> dict:
    """POPE accuracy, precision, recall, f1 and yes_ratio ("yes" is the positive class).

    ``predictions`` are raw model replies, parsed with ``pope_answer_is_yes``; ``labels`` are
    "yes"/"no". Returns fractions in [0, 1] plus the confusion counts tp, fp, tn, fn. Where the
    official script would divide by zero (no predicted or no true "yes"), the ratio is 0.0.
    """
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions but {len(labels)} labels")
    if not predictions:
        raise ValueError("pope_scores needs at least one prediction")
    tp = fp = tn = fn = 0
    for i, (prediction, label) in enumerate(zip(predictions, labels)):
        truth = _parse_yes_no_label(label, f"labels[{i}]") == "yes"
        said_yes = pope_answer_is_yes(prediction)
        tp += said_yes and truth
        fp += said_yes and not truth
        tn += not said_yes and not truth
        fn += not said_yes and truth
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (tp + tn) / len(predictions),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": (tp + fp) / len(predictions),
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
    }


def mme_parse_answer(text: str) -> str:
    """MME's reply parsing (official calculation.py): lowercase; "yes"/"no" as is; otherwise
    "yes" if the first 4 characters contain "yes", else "no" if they contain "no", else "other"."""
    text = text.lower()
    if text in ("yes", "no"):
        return text
    head = text[:4]
    return "yes" if "yes" in head else "no" if "no" in head else "other"


def mme_scores(records: Sequence[Mapping[str, Any]]) -> dict:
    """MME scores from records with keys ``category`` (subtask, e.g. "OCR"), ``image`` (image name),
    ``prediction`` (raw reply) and ``answer`` ("Yes"/"No").

    Per subtask: ``acc`` = fraction of questions answered correctly, ``acc_plus`` = fraction of
    images whose two questions are both correct (every image must have exactly two questions),
    ``score = (acc + acc_plus) * 100`` (max 200). ``perception`` / ``cognition`` sum the scores of
    the official subtask lists (``MME_PERCEPTION``, ``MME_COGNITION``); ``missing_subtasks`` lists
    official subtasks absent from ``records`` (their sums are then partial).
    """
    if not records:
        raise ValueError("mme_scores needs at least one record")
    known = set(MME_PERCEPTION) | set(MME_COGNITION)
    by_image: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for i, record in enumerate(records):
        missing = {"category", "image", "prediction", "answer"} - set(record)
        if missing:
            raise ValueError(f"records[{i}] is missing keys {sorted(missing)}")
        category = record["category"]
        if category not in known:
            raise ValueError(f"records[{i}]: unknown MME subtask {category!r}; expected one of "
                             f"{sorted(known)}")
        truth = _parse_yes_no_label(record["answer"], f"records[{i}]")
        by_image[category][record["image"]].append(mme_parse_answer(record["prediction"]) == truth)
    subtasks = {}
    for category, images in by_image.items():
        for image, correct in images.items():
            if len(correct) != 2:
                raise ValueError(
                    f"MME {category}/{image}: expected 2 questions, got {len(correct)}")
        acc = sum(sum(c) for c in images.values()) / (2 * len(images))
        acc_plus = sum(all(c) for c in images.values()) / len(images)
        subtasks[category] = {"acc": acc, "acc_plus": acc_plus, "score": (acc + acc_plus) * 100}
    return {
        "subtasks": subtasks,
        "perception": sum(subtasks[c]["score"] for c in MME_PERCEPTION if c in subtasks),
        "cognition": sum(subtasks[c]["score"] for c in MME_COGNITION if c in subtasks),
        "missing_subtasks": [c for c in MME_PERCEPTION + MME_COGNITION if c not in subtasks],
    }
