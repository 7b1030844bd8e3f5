"""EntityGrid-QA v2 is prior-balanced: answerers that never look at the image score the same on edge and non-edge
questions of the default test split (issue 13, item 1; spec/methods.md §4.3).

The split is the one configs/tiny_entitygrid.py evaluates on (built like the trainer builds it); the edge flags
are the generator's, which tests/test_entitygrid.py checks against the drawn pixels. Discrepancies are scored by
``entitygrid_scores`` (non-edge minus edge accuracy) and must be 0 +- 1 point. For comparison, v1 gave a
constant "1" counting answer +11.6 points.
"""

import collections
import importlib.util
import os

import numpy as np
import pytest

from vlm_jax.evaluate.bootstrap import MIN_RESAMPLES
from vlm_jax.evaluate.entitygrid_metrics import ENTITYGRID_TASKS, entitygrid_scores
from vlm_jax.run_config.build_data import build_source

CONFIG_PATH = os.path.join(os.path.dirname(__file__), "..", "configs", "tiny_entitygrid.py")
TOLERANCE = 0.01  # 1 point
TRAIN_QUESTIONS = 5000


@pytest.fixture(scope="module")
def splits():
    spec = importlib.util.spec_from_file_location("tiny_entitygrid", CONFIG_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = module.get_config().data
    test, train = build_source(data.eval_source.to_dict()), build_source(data.source.to_dict())
    described = [test.describe(i) for i in range(len(test))]
    return ([d["meta"] | {"question": d["conversations"][0]["value"]} for d in described],
            [train.describe(i)["meta"] for i in range(TRAIN_QUESTIONS)])


def discrepancies(questions, predictions) -> dict[str, float]:
    records = [{"task": q["task"], "edge": q["edge"], "prediction": p, "answer": q["answer"],
                "synonyms": q["accepted_answers"][1:]} for q, p in zip(questions, predictions, strict=True)]
    scores = entitygrid_scores(records, resamples=MIN_RESAMPLES)
    return {task: scores[task]["discrepancy"] for task in ENTITYGRID_TASKS}


def test_the_default_test_split_is_large_and_balanced(splits):
    test, _ = splits
    assert len(test) >= 3000
    cells = collections.Counter((q["task"], q["edge"]) for q in test)
    assert len(cells) == 6 and len(set(cells.values())) == 1  # 540 questions per task x edge flag


def test_the_most_frequent_training_answer_has_no_discrepancy(splits):
    test, train = splits
    majority = {task: collections.Counter(q["answer"] for q in train if q["task"] == task).most_common(1)[0][0]
                for task in ENTITYGRID_TASKS}
    for task, value in discrepancies(test, [majority[q["task"]] for q in test]).items():
        assert abs(value) <= TOLERANCE, (task, majority[task], value)


@pytest.mark.parametrize("task, answers", [("recognition", None), ("position", None), ("counting", ("1", "2"))])
def test_every_constant_answer_has_no_discrepancy(splits, task, answers):
    test, _ = splits
    questions = [q for q in test if q["task"] == task]
    for answer in answers or sorted({q["answer"] for q in questions}):
        value = discrepancies(questions, [answer] * len(questions))[task]
        assert abs(value) <= TOLERANCE, (task, answer, value)


def test_a_model_ignoring_the_image_has_no_discrepancy(splits):
    """Answers drawn from the per-task training answer distribution: the expected discrepancy (exact) and the
    mean over 200 draws (its standard error is about 2 points / sqrt(200) = 0.14 point per task)."""
    test, train = splits
    rng = np.random.default_rng(0)
    for task in ENTITYGRID_TASKS:
        counts = collections.Counter(q["answer"] for q in train if q["task"] == task)
        answers, weights = list(counts), np.array(list(counts.values())) / sum(counts.values())
        questions = [q for q in test if q["task"] == task]
        prior = dict(zip(answers, weights, strict=True))
        expected = {edge: np.mean([prior.get(q["answer"], 0.0) for q in questions if q["edge"] == edge])
                    for edge in (False, True)}
        assert abs(expected[False] - expected[True]) <= TOLERANCE and expected[False] > 0.01
        draws = rng.choice(answers, size=(200, len(questions)), p=weights)  # canonical answers: exact match
        correct = draws == np.array([q["answer"] for q in questions])
        edge = np.array([q["edge"] for q in questions])
        mean_discrepancy = correct[:, ~edge].mean() - correct[:, edge].mean()
        assert abs(mean_discrepancy) <= TOLERANCE, (task, mean_discrepancy)
        one_draw = discrepancies(questions, list(draws[0]))[task]  # the scorer agrees on a draw
        assert one_draw == pytest.approx(correct[0, ~edge].mean() - correct[0, edge].mean(), abs=1e-12)


def test_edge_and_non_edge_questions_are_the_same_questions(splits):
    """So any answerer that reads only the question (e.g. a text-only model trained on the train split) scores
    exactly the same on both."""
    test, _ = splits
    for task in ENTITYGRID_TASKS:
        asked = {edge: collections.Counter((q["question"], q["answer"]) for q in test
                                           if q["task"] == task and q["edge"] == edge) for edge in (False, True)}
        assert asked[False] == asked[True] and len(asked[False]) > 8
