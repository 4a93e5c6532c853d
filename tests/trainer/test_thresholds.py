"""Thresholds at a target FAR: synthetic scores with known distributions, exact intervals, data rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from trainer.thresholds import (
    clopper_pearson,
    fit_verification,
    min_impostor_pairs,
    per_comparison_far,
    rules_from_impostors,
)
from vigil.errors import CalibrationError

IMPOSTOR_MEAN, GENUINE_MEAN, SPREAD = 0.2, 0.8, 0.1
IMPOSTORS, GENUINES = 200_000, 20_000


def make_scores(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Genuine ~ N(0.8, 0.1) and impostor ~ N(0.2, 0.1) scores."""
    rng = np.random.default_rng(seed)
    return rng.normal(GENUINE_MEAN, SPREAD, GENUINES), rng.normal(IMPOSTOR_MEAN, SPREAD, IMPOSTORS)


@pytest.mark.parametrize("target", [1e-2, 1e-3, 1e-4])
def test_threshold_matches_the_analytic_one(target: float) -> None:
    # given 200k impostor scores from N(0.2, 0.1), whose FAR at t is norm.sf(t)
    genuine, impostor = make_scores()
    analytic = float(norm.isf(target, IMPOSTOR_MEAN, SPREAD))
    # when the threshold is fitted to the target FAR
    fit = fit_verification(genuine, impostor, target)
    # then it lands within 0.01 of the analytic threshold (the empirical quantile's standard error
    # is ~0.002 at 1e-3 and ~0.006 at 1e-4), its FAR meets the target, the interval holds the true
    # FAR at the fitted threshold, and the TAR is the analytic one
    assert abs(fit.threshold - analytic) < 0.01, (fit.threshold, analytic)
    assert fit.far <= target
    true_far = float(norm.sf(fit.threshold, IMPOSTOR_MEAN, SPREAD))
    assert fit.far_ci_low <= true_far <= fit.far_ci_high, (fit.far_ci_low, true_far, fit.far_ci_high)
    assert fit.tar == pytest.approx(norm.sf(fit.threshold, GENUINE_MEAN, SPREAD), abs=0.005)
    assert (fit.impostor_pairs, fit.genuine_pairs) == (IMPOSTORS, GENUINES)
    assert fit.threshold == round(fit.threshold, 4), "thresholds are stored with 4 decimals"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        # the rule of three, exactly: ln(0.05) / ln(1 - target)
        (1e-3, 2995),
        (1e-2, 299),
        (0.05, 59),
        (0.1, 29),
    ],
)
def test_min_impostor_pairs_is_the_rule_of_three(target: float, expected: int) -> None:
    assert min_impostor_pairs(target) == expected
    # with that many pairs and no false accept the exact one-sided bound is just below the target
    assert 1 - 0.05 ** (1 / expected) <= target < 1 - 0.05 ** (1 / (expected - 1))


def test_too_few_impostor_pairs_is_refused() -> None:
    # given 2994 impostor pairs: one short of what a FAR of 1e-3 needs
    genuine, impostor = make_scores()
    with pytest.raises(CalibrationError, match=r"needs at least 2995 impostor pairs.*gives 2994"):
        fit_verification(genuine, impostor[:2994], 1e-3)


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        # no events: the upper end is 1 - 0.025^(1/n)
        (0, 3000, 0.0, 1 - 0.025 ** (1 / 3000)),
        # all events: the lower end is 0.025^(1/n)
        (10, 10, 0.025 ** (1 / 10), 1.0),
        # a textbook value: 3 of 100 gives (0.0062, 0.0852)
        (3, 100, 0.0062, 0.0852),
    ],
)
def test_clopper_pearson_interval(successes: int, trials: int, low: float, high: float) -> None:
    interval = clopper_pearson(successes, trials)
    assert interval == pytest.approx((low, high), abs=1e-4)


def test_rules_grow_with_the_gallery_and_stop_where_the_data_does() -> None:
    # given 200k impostor pairs and a target FPIR of 1e-2
    genuine, impostor = make_scores()
    # when rules are fitted for galleries of 1 to 1000 people
    rules = rules_from_impostors(genuine, impostor, 1e-2, (1, 10, 100, 1000))
    sizes = [size for size, _ in rules]
    # then a size is fitted only when 200k pairs support its per-comparison FAR (1000 people need
    # a FAR of 1e-5 per comparison: ~300k pairs), thresholds never fall as the gallery grows,
    # and each rule's FPIR meets the target
    assert sizes == [1, 10, 100]
    thresholds = [point.threshold for _, point in rules]
    assert thresholds == sorted(thresholds)
    for size, point in rules:
        assert point.fpir <= 1e-2 + 1e-12 and point.margin == 0.0
        analytic = float(norm.isf(per_comparison_far(1e-2, size), IMPOSTOR_MEAN, SPREAD))
        assert abs(point.threshold - analytic) < 0.02, (size, point.threshold, analytic)
    assert math.isclose(1 - (1 - per_comparison_far(1e-2, 1000)) ** 1000, 1e-2)
