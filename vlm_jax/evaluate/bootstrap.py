"""Stratified percentile bootstrap: 95% intervals for accuracies and their differences.

The questions of each stratum (e.g. one EntityGrid-QA task x edge cell) are resampled with replacement, keeping
the stratum's size, which the benchmark's design fixes; a statistic computed from the strata means is
recomputed on every resample, and its 95% interval is the 2.5th .. 97.5th percentile of those values (the
percentile interval, Efron & Tibshirani, "An Introduction to the Bootstrap", 1993, §13.3). The default is 2,000
resamples: the Monte-Carlo error of a 95% percentile bound is then about 0.06 standard error. For a correct /
incorrect vector of n questions with accuracy p the resampled accuracy has standard deviation sqrt(p (1 - p) / n),
the binomial standard error (tests/test_bootstrap.py checks this).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

DEFAULT_RESAMPLES = 2000
MIN_RESAMPLES = 100
_MAX_CHUNK = 1 << 22  # resampled indices held at once


def resampled_means(strata: Mapping[Hashable, Sequence[float]], resamples: int = DEFAULT_RESAMPLES,
                    seed: int = 0) -> dict[Hashable, np.ndarray]:
    """Per stratum, the mean score of each bootstrap resample of its questions: ``{key: [resamples]}``.

    `strata` maps a key to per-question scores (1.0 correct, 0.0 wrong, or any number); each stratum draws from
    its own stream of ``seed`` (in the mapping's order), so the result is reproducible. An empty stratum gives
    NaN means. Raises ValueError for fewer than MIN_RESAMPLES resamples.
    """
    if resamples < MIN_RESAMPLES:
        raise ValueError(f"resamples must be at least {MIN_RESAMPLES} for a 95% percentile interval, got {resamples}")
    means = {}
    for key, stream in zip(strata, np.random.SeedSequence(seed).spawn(len(strata)), strict=True):
        scores = np.asarray(strata[key], dtype=np.float64)
        n = len(scores)
        if n == 0:
            means[key] = np.full(resamples, np.nan)
            continue
        rng = np.random.default_rng(stream)
        chunk = max(1, _MAX_CHUNK // n)
        means[key] = np.concatenate([scores[rng.integers(0, n, size=(min(chunk, resamples - start), n))].mean(axis=1)
                                     for start in range(0, resamples, chunk)])
    return means


def percentile_interval(samples: np.ndarray) -> list[float]:
    """The 95% percentile interval ``[low, high]`` of a statistic's bootstrap values; NaN bounds when the
    statistic is undefined (NaN) in any resample."""
    samples = np.asarray(samples, dtype=np.float64)
    if np.isnan(samples).any():
        return [float("nan"), float("nan")]
    low, high = np.percentile(samples, [2.5, 97.5])
    return [float(low), float(high)]
