"""Summary statistics for per-sample scores: seeded percentile-bootstrap CIs.

    mean, low, high = bootstrap_ci(rewards, confidence=0.95, resamples=2000, seed=0)

A win rate is the mean of a 1 / 0.5 / 0 column (e.g. `pairrm_win`), so it gets its CI here too.

Plain numpy; the same (values, confidence, resamples, seed) always gives the same interval.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

# Resample indices are drawn in chunks of at most this many entries (8 MB of int64), so memory
# stays flat for large sample counts; chunking depends only on the inputs, so results stay seeded.
_CHUNK_ENTRIES = 1 << 20


def bootstrap_ci(
    values: Iterable[float],
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(mean, low, high): the sample mean and its percentile-bootstrap `confidence` interval.

    `values` is a 1-D sequence of N >= 1 numbers. Each of `resamples` resamples draws N values with
    replacement (numpy default_rng(seed)); low/high are the (1-c)/2 and (1+c)/2 percentiles of the
    resample means. Sums accumulate in float64.
    """
    x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"bootstrap_ci: expected a 1-D sequence of values, got shape {x.shape}")
    if x.size == 0:
        raise ValueError("bootstrap_ci: no values")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"bootstrap_ci: confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"bootstrap_ci: resamples must be >= 1, got {resamples}")
    n = x.size
    rng = np.random.default_rng(seed)
    rows_per_chunk = max(1, _CHUNK_ENTRIES // n)
    means = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, rows_per_chunk):
        stop = min(resamples, start + rows_per_chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = x[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(means, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return float(x.mean()), float(low), float(high)
