"""Open-set identification metrics on hand-made and synthetic score sets."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.openset import (
    OpenSetScores,
    dir_at_fpir,
    dir_fpir_curve,
    fit_operating_point,
    operating_point,
    rank1,
    threshold_at_fpir,
)


def _scores(
    known_top: list[float],
    known_correct: list[bool],
    unknown_top: list[float],
    known_lead: list[float] | None = None,
    unknown_lead: list[float] | None = None,
) -> OpenSetScores:
    return OpenSetScores(
        known_top=np.array(known_top),
        known_lead=np.array(known_lead if known_lead is not None else [1.0] * len(known_top)),
        known_correct=np.array(known_correct),
        unknown_top=np.array(unknown_top),
        unknown_lead=np.array(unknown_lead if unknown_lead is not None else [1.0] * len(unknown_top)),
    )


def test_rank1_counts_right_answers_whatever_the_score() -> None:
    assert rank1(_scores([0.1, 0.9, 0.5, 0.2], [True, False, True, True], [0.3])) == 0.75


def test_operating_point_counts_hits_misses_and_strangers_by_hand() -> None:
    scores = _scores([0.9, 0.8, 0.7, 0.4], [True, False, True, True], [0.85, 0.6, 0.3, 0.2])
    point = operating_point(scores, threshold=0.65, margin=0.0)
    assert point.dir == 0.5  # 0.9 and 0.7 are right and pass; 0.8 passes but is the wrong person
    assert point.misidentification_rate == 0.25
    assert point.fpir == 0.25  # only the stranger at 0.85 passes


def test_margin_rejects_close_calls() -> None:
    scores = _scores([0.9, 0.9], [True, True], [0.95, 0.95], known_lead=[0.3, 0.01], unknown_lead=[0.2, 0.01])
    point = operating_point(scores, threshold=0.5, margin=0.05)
    assert (point.dir, point.fpir) == (0.5, 0.5)


def test_threshold_at_fpir_is_the_lowest_that_admits_few_enough_strangers() -> None:
    unknown = [0.1 * i for i in range(10)]  # 0.0 … 0.9
    scores = _scores([0.95, 0.75, 0.5], [True, True, True], unknown)
    # FPIR 0.1 of 10 strangers: one may pass, so the threshold sits at the top stranger's score.
    assert threshold_at_fpir(scores, 0.1) == pytest.approx(0.9)
    assert operating_point(scores, threshold_at_fpir(scores, 0.1), 0.0).fpir == pytest.approx(0.1)
    # FPIR 0: no stranger may pass; the threshold moves above 0.9 (to the next score, 0.95).
    point = dir_at_fpir(scores, 0.0)
    assert point.fpir == 0.0
    assert point.dir == pytest.approx(1 / 3)


def test_dir_at_fpir_on_separated_gaussians_matches_the_analytic_value() -> None:
    # Strangers ~ N(0, 1), known (all correct) ~ N(3, 1): at FPIR 1 % the threshold is the
    # 99th percentile of N(0, 1) = 2.326, and DIR = P(N(3, 1) >= 2.326) = Φ(0.674) = 0.75.
    rng = np.random.default_rng(0)
    count = 200_000
    scores = OpenSetScores(
        known_top=rng.normal(3.0, 1.0, count),
        known_lead=np.full(count, np.inf),
        known_correct=np.ones(count, bool),
        unknown_top=rng.normal(0.0, 1.0, count),
        unknown_lead=np.full(count, np.inf),
    )
    point = dir_at_fpir(scores, 0.01)
    assert point.threshold == pytest.approx(2.326, abs=0.02)
    assert point.dir == pytest.approx(0.75, abs=0.01)
    assert point.fpir <= 0.01


def test_fitting_uses_the_smallest_margin_that_keeps_look_alikes_apart() -> None:
    # Right answers lead by 0.1-0.3; wrong answers (look-alikes) lead by less than 0.02.
    rng = np.random.default_rng(1)
    correct = rng.random(1000) < 0.9
    scores = OpenSetScores(
        known_top=rng.uniform(0.8, 0.95, 1000),
        known_lead=np.where(correct, rng.uniform(0.1, 0.3, 1000), rng.uniform(0.0, 0.02, 1000)),
        known_correct=correct,
        unknown_top=rng.uniform(0.5, 0.85, 1000),
        unknown_lead=rng.uniform(0.0, 0.2, 1000),
    )
    fitted = fit_operating_point(scores, 0.01, max_misidentification=1e-3, margins=(0.0, 0.01, 0.05, 0.08))
    assert fitted.margin == 0.05  # 0 and 0.01 let look-alikes through; 0.08 would cost right answers
    assert fitted.misidentification_rate <= 1e-3 and fitted.fpir <= 0.01
    # without look-alikes, no margin is needed at all
    honest = OpenSetScores(
        scores.known_top, scores.known_lead, np.ones(1000, bool), scores.unknown_top, scores.unknown_lead
    )
    assert fit_operating_point(honest, 0.01, margins=(0.0, 0.05)).margin == 0.0


def test_dir_fpir_curve_is_monotonic_and_ends_at_one() -> None:
    scores = _scores([0.9, 0.8, 0.7], [True, False, True], [0.85, 0.2])
    fpir, dir_ = dir_fpir_curve(scores)
    assert np.all(np.diff(fpir) >= 0) and np.all(np.diff(dir_) >= 0)
    assert fpir[-1] == 1.0


def test_scores_without_strangers_are_rejected() -> None:
    with pytest.raises(ValueError, match="both known and unknown"):
        _scores([0.9], [True], [])
