"""Bootstrap intervals (vlm_jax/evaluate/bootstrap.py) against closed-form binomial results, and the intervals
``entitygrid_scores`` reports.

Tolerances: with R resamples, the standard deviation of R draws estimates the true bootstrap standard error with
relative Monte-Carlo error about 1 / sqrt(2 (R - 1)) (1.6% for R = 2,000); the tests allow 5% (3 of those). The
bootstrap distribution of an accuracy over n questions with k correct is Binomial(n, k/n) / n, so its standard
deviation is exactly sqrt(p (1 - p) / n) with p = k / n (no n - 1 correction), and for n p (1 - p) >= 40 the
95% percentile interval is within a few % of p +- 1.96 sqrt(p (1 - p) / n) (normal approximation).
"""

import math

import numpy as np
import pytest

from vlm_jax.evaluate.bootstrap import MIN_RESAMPLES, percentile_interval, resampled_means
from vlm_jax.evaluate.entitygrid_metrics import ENTITYGRID_TASKS, entitygrid_scores

R = 2000
MONTE_CARLO = 3 / math.sqrt(2 * (R - 1))  # 3 sigma relative error of a bootstrap standard deviation


def correct_vector(n: int, k: int, seed: int = 0) -> np.ndarray:
    """n answers of which exactly k are correct, in random order."""
    flags = np.zeros(n)
    flags[:k] = 1
    return np.random.default_rng(seed).permutation(flags)


@pytest.mark.parametrize("n, k", [(400, 120), (540, 270), (1080, 972), (90, 30)])
def test_bootstrap_standard_error_of_an_accuracy_is_binomial(n, k):
    means = resampled_means({"cell": correct_vector(n, k)}, R, seed=1)["cell"]
    p = k / n
    binomial = math.sqrt(p * (1 - p) / n)
    assert means.std(ddof=1) == pytest.approx(binomial, rel=MONTE_CARLO)
    assert means.mean() == pytest.approx(p, abs=3 * binomial / math.sqrt(R))
    low, high = percentile_interval(means)
    assert low <= p <= high
    assert (high - low) == pytest.approx(2 * 1.96 * binomial, rel=0.08)


def test_bootstrap_standard_error_of_a_discrepancy_adds_the_variances():
    edge, non_edge = correct_vector(300, 240, seed=2), correct_vector(500, 250, seed=3)
    means = resampled_means({"edge": edge, "non_edge": non_edge}, R, seed=4)
    difference = means["non_edge"] - means["edge"]
    closed_form = math.sqrt(0.8 * 0.2 / 300 + 0.5 * 0.5 / 500)
    assert difference.std(ddof=1) == pytest.approx(closed_form, rel=MONTE_CARLO)
    assert abs(np.corrcoef(means["edge"], means["non_edge"])[0, 1]) < 4 / math.sqrt(R)  # independent strata


def test_percentile_intervals_cover_the_true_accuracy_about_95_percent_of_the_time():
    """300 synthetic benchmarks of 200 questions with true accuracy 0.7: the coverage's binomial standard error is
    1.3 points, and the percentile interval for a proportion at n p (1 - p) = 42 under-covers by about 1 point."""
    rng = np.random.default_rng(5)
    covered = 0
    for trial in range(300):
        flags = (rng.random(200) < 0.7).astype(float)
        low, high = percentile_interval(resampled_means({"cell": flags}, 1000, seed=trial)["cell"])
        covered += low <= 0.7 <= high
    assert 0.90 <= covered / 300 <= 0.98


def test_resampling_is_seeded_and_edge_cases_are_defined():
    strata = {"a": correct_vector(50, 20), "b": correct_vector(30, 30), "empty": []}
    first, again = resampled_means(strata, 200, seed=7), resampled_means(strata, 200, seed=7)
    assert all(np.array_equal(first[k], again[k], equal_nan=True) for k in strata)
    assert not np.array_equal(first["a"], resampled_means(strata, 200, seed=8)["a"])
    assert percentile_interval(first["b"]) == [1.0, 1.0]
    assert all(math.isnan(x) for x in percentile_interval(first["empty"]))
    many = resampled_means({"a": correct_vector(3, 1)}, 100_000, seed=0)["a"]  # chunked: 2^22 indices at a time
    assert many.shape == (100_000,) and set(np.unique(many)) <= {0, 1 / 3, 2 / 3, 1}
    with pytest.raises(ValueError, match="at least 100"):
        resampled_means(strata, MIN_RESAMPLES - 1)


def _records(task, edge, n, k):
    return [{"task": task, "edge": edge, "prediction": "yes" if i < k else "no", "answer": "yes"} for i in range(n)]


def test_entitygrid_scores_report_an_interval_for_every_accuracy_and_discrepancy():
    records = (_records("recognition", True, 540, 270) + _records("recognition", False, 540, 378)
               + _records("position", True, 540, 500) + _records("position", False, 540, 500)
               + _records("counting", False, 3, 1))
    scores = entitygrid_scores(records)
    assert scores["bootstrap"]["resamples"] == 2000 and scores["bootstrap"]["seed"] == 0
    for task in ENTITYGRID_TASKS:
        intervals = scores[task]["ci95"]
        assert set(intervals) == {"edge", "non_edge", "all", "discrepancy"}
        for name, (low, high) in intervals.items():
            value = scores[task][name]
            assert (math.isnan(value) and math.isnan(low) and math.isnan(high)) or low <= value <= high
    recognition = scores["recognition"]
    closed_form = math.sqrt(0.5 * 0.5 / 540 + 0.7 * 0.3 / 540)
    low, high = recognition["ci95"]["discrepancy"]
    assert recognition["discrepancy"] == pytest.approx(0.2)
    assert high - low == pytest.approx(2 * 1.96 * closed_form, rel=0.08)
    pooled = math.sqrt((0.5 * 0.5 / 540 + 0.7 * 0.3 / 540) / 4)  # cells of fixed size: (edge + non_edge) / 2
    assert recognition["ci95"]["all"][1] - recognition["ci95"]["all"][0] == pytest.approx(2 * 1.96 * pooled, rel=0.08)
    assert scores["position"]["ci95"]["discrepancy"][0] < 0 < scores["position"]["ci95"]["discrepancy"][1]
    assert all(math.isnan(x) for x in scores["counting"]["ci95"]["edge"] + scores["counting"]["ci95"]["discrepancy"])
    low, high = scores["overall_ci95"]
    assert low <= scores["overall"] <= high
    assert _nan_equal(entitygrid_scores(records), scores)  # seeded: the same intervals again
    assert entitygrid_scores(records, seed=1)["recognition"]["ci95"] != recognition["ci95"]


def _nan_equal(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_nan_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_nan_equal, a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b
