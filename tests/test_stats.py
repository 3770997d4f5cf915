import numpy as np
import pytest

from raysweep.stats import bootstrap_ci


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(1).normal(0.5, 0.2, size=300)
    mean, low, high = bootstrap_ci(values, seed=3)
    assert mean == pytest.approx(values.mean())
    assert low < mean < high
    assert bootstrap_ci(values, seed=3) == (mean, low, high)
    assert bootstrap_ci(values, seed=4) != (mean, low, high)


def test_bootstrap_ci_matches_normal_theory_width():
    # For a mean, the 95% percentile interval approaches mean +- 1.96 * sd / sqrt(n).
    values = np.random.default_rng(0).normal(0.0, 1.0, size=2000)
    mean, low, high = bootstrap_ci(values, resamples=4000, seed=0)
    half = 1.96 * values.std(ddof=1) / np.sqrt(values.size)
    assert high - low == pytest.approx(2 * half, rel=0.1)
    assert (low + high) / 2 == pytest.approx(mean, abs=0.2 * half)


def test_bootstrap_ci_narrows_with_lower_confidence_and_handles_constants():
    values = list(np.random.default_rng(2).uniform(size=100))
    _, low95, high95 = bootstrap_ci(values, confidence=0.95)
    _, low50, high50 = bootstrap_ci(values, confidence=0.5)
    assert low95 < low50 < high50 < high95
    assert bootstrap_ci([0.25, 0.25, 0.25]) == (0.25, 0.25, 0.25)
    assert bootstrap_ci([2.0]) == (2.0, 2.0, 2.0)


def test_bootstrap_ci_chunking_keeps_results_for_large_inputs():
    # 2000 resamples x 3000 values spans several index chunks; the interval must still be sane.
    values = np.arange(3000, dtype=float) / 3000
    mean, low, high = bootstrap_ci(values, seed=0)
    assert low < mean < high and high - low < 0.03


@pytest.mark.parametrize("bad", [[], [[1.0, 2.0]]])
def test_bootstrap_ci_rejects_empty_and_nested(bad):
    with pytest.raises(ValueError):
        bootstrap_ci(bad)


def test_bootstrap_ci_rejects_bad_confidence():
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([1.0, 2.0], confidence=1.5)
