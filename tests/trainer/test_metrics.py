"""Tests for trainer.metrics: ROC, AUC, TAR@FAR, EER, thresholds and the k-fold protocol."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import numpy.typing as npt
import pytest

from trainer.metrics import (
    Confusion,
    auc,
    best_threshold,
    confusion_at,
    equal_error_rate,
    kfold_verification,
    roc_curve,
    tar_at_far,
    threshold_at_far,
)

# A hand-worked example: 4 genuine (1) and 4 impostor (0) pairs, sorted by score.
#   score: 0.9 0.8 0.7 0.6 0.5 0.4 0.3 0.2
#   label:   1   1   0   1   0   1   0   0
HAND_SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
HAND_LABELS = np.array([1, 1, 0, 1, 0, 1, 0, 0], dtype=bool)


def make_separable(
    pairs_per_class: int = 50, folds: int = 10
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """Genuine scores in [0.6, 1.0], impostor scores in [-1.0, 0.4], folds round-robin."""
    genuine = np.linspace(0.6, 1.0, pairs_per_class)
    impostor = np.linspace(-1.0, 0.4, pairs_per_class)
    scores = np.concatenate([genuine, impostor])
    labels = np.concatenate([np.ones(pairs_per_class, bool), np.zeros(pairs_per_class, bool)])
    fold_ids = np.arange(scores.size) % folds
    return scores, labels, fold_ids


def test_perfectly_separable_scores_give_perfect_metrics() -> None:
    # given scores where every genuine pair outscores every impostor pair
    scores, labels, fold_ids = make_separable()

    # when running the k-fold protocol
    result = kfold_verification(scores, labels, fold_ids)

    # then every metric is at its best value
    assert result.accuracy_mean == 1.0, f"accuracy should be 1, got {result.accuracy_mean}"
    assert result.accuracy_std == 0.0, f"std should be 0, got {result.accuracy_std}"
    assert result.auc == pytest.approx(1.0), f"AUC should be 1, got {result.auc}"
    assert result.eer == 0.0, f"EER should be 0, got {result.eer}"
    assert result.tar_at_far_1e3 == 1.0, f"TAR@1e-3 should be 1, got {result.tar_at_far_1e3}"
    assert (result.precision, result.recall, result.f1) == (1.0, 1.0, 1.0), "pooled P/R/F1 should all be 1"
    assert 0.4 < result.threshold < 0.6, (
        f"threshold should fall in the gap (0.4, 0.6), got {result.threshold}"
    )


def test_roc_curve_matches_hand_worked_example() -> None:
    # given the hand-worked example
    # when computing the exact ROC curve
    far, tar, thresholds = roc_curve(HAND_SCORES, HAND_LABELS)

    # then there is one point per distinct score plus the accept-nothing start
    assert np.allclose(far, [0, 0, 0, 0.25, 0.25, 0.5, 0.5, 0.75, 1.0]), f"unexpected FAR {far}"
    assert np.allclose(tar, [0, 0.25, 0.5, 0.5, 0.75, 0.75, 1.0, 1.0, 1.0]), f"unexpected TAR {tar}"
    assert thresholds[0] == np.inf and np.allclose(thresholds[1:], HAND_SCORES), f"unexpected {thresholds}"
    # and the AUC equals the Mann-Whitney count: 13 of 16 genuine/impostor orderings are right
    assert auc(far, tar) == pytest.approx(13 / 16), "AUC should be 13/16"


def test_roc_curve_merges_tied_scores() -> None:
    # given a genuine and an impostor pair with the same score
    scores = np.array([0.5, 0.5, 0.9, 0.1])
    labels = np.array([1, 0, 1, 0])

    # when computing the ROC curve
    far, tar, thresholds = roc_curve(scores, labels)

    # then the tie is one point that accepts both pairs at once
    assert np.allclose(thresholds[1:], [0.9, 0.5, 0.1]), f"expected 3 distinct thresholds, got {thresholds}"
    assert np.allclose(far, [0, 0, 0.5, 1.0]) and np.allclose(tar, [0, 0.5, 1.0, 1.0]), f"got {far}, {tar}"


@pytest.mark.parametrize(
    ("far_target", "expected_tar", "expected_threshold"),
    [
        (0.0, 0.5, 0.8),  # no impostor may pass: accept down to 0.8, just above the 0.7 impostor
        (0.1, 0.5, 0.8),  # 0.1 * 4 impostors < 1 pair, so still none may pass
        (0.25, 0.75, 0.6),  # one impostor (0.7) may pass: accept down to 0.6, above the 0.5 impostor
        (0.5, 1.0, 0.4),  # two impostors may pass: every genuine pair is in
        (1.0, 1.0, 0.2),  # anything goes: accept everything
    ],
)
def test_tar_at_far_hand_worked(far_target: float, expected_tar: float, expected_threshold: float) -> None:
    # given the hand-worked example
    # when asking for the best TAR under a FAR budget
    tar = tar_at_far(HAND_SCORES, HAND_LABELS, far_target)
    threshold = threshold_at_far(HAND_SCORES, HAND_LABELS, far_target)

    # then the TAR and threshold are the ones worked out by hand
    assert tar == pytest.approx(expected_tar), f"TAR at FAR {far_target}: expected {expected_tar}, got {tar}"
    assert threshold == pytest.approx(expected_threshold), f"threshold at FAR {far_target}: got {threshold}"


def test_tar_at_far_is_zero_when_top_score_is_an_impostor() -> None:
    # given an impostor pair that outscores every genuine pair
    scores = np.array([0.99, 0.8, 0.7])
    labels = np.array([0, 1, 1])

    # when no impostor may pass
    tar = tar_at_far(scores, labels, 0.0)
    threshold = threshold_at_far(scores, labels, 0.0)

    # then nothing can be accepted
    assert tar == 0.0, f"TAR should be 0, got {tar}"
    assert threshold == np.inf, f"threshold should be +inf, got {threshold}"


def test_confusion_at_hand_worked_threshold() -> None:
    # given the hand-worked example and a threshold between 0.5 and 0.4
    # when counting decisions (accept 0.9, 0.8, 0.7, 0.6, 0.5)
    confusion = confusion_at(HAND_SCORES, HAND_LABELS, 0.45)

    # then the counts and derived rates are the hand-worked ones
    assert confusion == Confusion(tp=3, fp=2, tn=2, fn=1), f"unexpected counts {confusion}"
    assert confusion.accuracy == pytest.approx(5 / 8), "accuracy should be 5/8"
    assert confusion.precision == pytest.approx(3 / 5), "precision should be 3/5"
    assert confusion.recall == pytest.approx(3 / 4), "recall should be 3/4"
    assert confusion.f1 == pytest.approx(2 / 3), "F1 = 2PR/(P+R) = 2/3"


def test_confusion_rates_guard_zero_division() -> None:
    # given a threshold above every score (nothing accepted) on impostor pairs only
    # when counting decisions
    confusion = confusion_at(np.array([0.1, 0.2]), np.array([0, 0]), 1.0)

    # then the undefined rates are 0 instead of raising
    assert confusion == Confusion(tp=0, fp=0, tn=2, fn=0), f"unexpected counts {confusion}"
    assert (confusion.precision, confusion.recall, confusion.f1) == (0.0, 0.0, 0.0), "undefined rates are 0"
    assert Confusion(0, 0, 0, 0).accuracy == 0.0, "empty confusion has accuracy 0"


def test_equal_error_rate_hand_worked() -> None:
    # given the hand-worked example
    # when computing the EER
    eer, threshold = equal_error_rate(HAND_SCORES, HAND_LABELS)

    # then FAR = FRR = 1/4 exactly at threshold 0.6 (one impostor in, one genuine out)
    assert eer == pytest.approx(0.25), f"EER should be 0.25, got {eer}"
    assert threshold == pytest.approx(0.6), f"EER threshold should be 0.6, got {threshold}"


def test_equal_error_rate_of_unit_gaussians_matches_analytic_value() -> None:
    # given genuine scores ~ N(1, 1) and impostor scores ~ N(-1, 1)
    rng = np.random.default_rng(20240601)
    samples = 200_000
    scores = np.concatenate([rng.normal(1.0, 1.0, samples), rng.normal(-1.0, 1.0, samples)])
    labels = np.concatenate([np.ones(samples, bool), np.zeros(samples, bool)])

    # when computing the EER
    eer, threshold = equal_error_rate(scores, labels)

    # then it is Phi(-1), reached at threshold 0 by symmetry (standard error ~ 0.001)
    phi_minus_one = 0.5 * math.erfc(1.0 / math.sqrt(2.0))
    assert eer == pytest.approx(phi_minus_one, abs=5e-3), f"EER should be ~{phi_minus_one:.4f}, got {eer:.4f}"
    assert threshold == pytest.approx(0.0, abs=2e-2), f"EER threshold should be ~0, got {threshold:.4f}"
    # and the AUC is Phi(2 / sqrt(2)) for the difference of the two Gaussians
    expected_auc = 0.5 * math.erfc(-1.0)
    far, tar, _ = roc_curve(scores, labels)
    assert auc(far, tar) == pytest.approx(expected_auc, abs=3e-3), f"AUC should be ~{expected_auc:.4f}"


def test_best_threshold_maximises_accuracy_and_breaks_ties_high() -> None:
    # given the hand-worked example, where accepting down to 0.8, 0.6 or 0.4 all give 6/8 correct
    # when choosing the accuracy-maximising threshold
    threshold = best_threshold(HAND_SCORES, HAND_LABELS)

    # then the tie goes to the highest cut (fewest false accepts), midway between 0.8 and 0.7
    assert threshold == pytest.approx(0.75), f"expected 0.75, got {threshold}"
    assert confusion_at(HAND_SCORES, HAND_LABELS, threshold).accuracy == pytest.approx(0.75), "accuracy 6/8"


@pytest.mark.parametrize(
    ("scores", "labels", "expected_accepted"),
    [
        ([0.1, 0.2, 0.3], [1, 0, 0], 0),  # inverted scores, mostly impostors: rejecting all (2/3) is best
        ([0.1, 0.2, 0.3], [1, 1, 0], 3),  # inverted scores, mostly genuine: accepting all (2/3) is best
        ([0.1, 0.2, 0.3], [0, 1, 1], 2),  # clean split between 0.1 and 0.2
        ([0.5, 0.5, 0.5], [1, 1, 0], 3),  # one distinct score: accepting all (2/3) beats rejecting all
    ],
)
def test_best_threshold_edges(scores: list[float], labels: list[int], expected_accepted: int) -> None:
    # given small score sets whose best cut is at an edge or in the middle
    scores_array, labels_array = np.array(scores), np.array(labels)

    # when choosing the threshold
    threshold = best_threshold(scores_array, labels_array)

    # then the threshold accepts exactly the expected number of pairs
    accepted = int(np.sum(scores_array >= threshold))
    assert accepted == expected_accepted, (
        f"threshold {threshold} accepts {accepted}, expected {expected_accepted}"
    )


def test_kfold_threshold_is_not_chosen_on_the_held_out_fold() -> None:
    # given 10 folds; folds 1-9 have genuine 0.6 / impostor 0.4, fold 0 has genuine 0.45 / impostor 0.3,
    # so fold 0 alone would pick a threshold in (0.3, 0.45), but the other folds pick 0.5
    fold_ids = np.repeat(np.arange(10), 2)
    labels = np.tile([True, False], 10)
    scores = np.where(labels, 0.6, 0.4)
    scores[fold_ids == 0] = [0.45, 0.3]

    # when running the k-fold protocol
    result = kfold_verification(scores, labels, fold_ids)

    # then fold 0 is judged with the threshold of the others and loses its genuine pair
    assert result.fold_thresholds[0] == pytest.approx(0.5), f"fold 0 threshold: {result.fold_thresholds[0]}"
    assert result.fold_accuracies[0] == 0.5, (
        f"fold 0 must not be scored in-fold, got {result.fold_accuracies[0]}"
    )
    # and the other folds, whose training data include fold 0, cut between 0.4 and 0.45
    assert np.allclose(result.fold_thresholds[1:], 0.425), f"other thresholds: {result.fold_thresholds[1:]}"
    assert result.fold_accuracies[1:] == (1.0,) * 9, (
        f"other folds should be perfect: {result.fold_accuracies}"
    )
    assert result.accuracy_mean == pytest.approx(0.95), "mean of one 0.5 and nine 1.0"
    assert result.accuracy_std == pytest.approx(np.std([0.5] + [1.0] * 9)), "population std (ddof 0)"
    assert result.threshold == pytest.approx((0.5 + 9 * 0.425) / 10), "threshold is the mean of the folds'"


def test_kfold_pools_precision_recall_over_held_out_predictions() -> None:
    # given the fold-leak case above: 10 genuine pairs, one of which is rejected out of fold
    fold_ids = np.repeat(np.arange(10), 2)
    labels = np.tile([True, False], 10)
    scores = np.where(labels, 0.6, 0.4)
    scores[fold_ids == 0] = [0.45, 0.3]

    # when running the k-fold protocol
    result = kfold_verification(scores, labels, fold_ids)

    # then the pooled counts are tp=9, fp=0, fn=1
    assert result.precision == 1.0, f"no impostor is accepted, got precision {result.precision}"
    assert result.recall == pytest.approx(0.9), f"9 of 10 genuine accepted, got recall {result.recall}"
    assert result.f1 == pytest.approx(2 * 0.9 / 1.9), f"F1 of P=1, R=0.9, got {result.f1}"


def test_kfold_to_dict_has_report_keys_and_is_json_ready() -> None:
    # given a k-fold result
    scores, labels, fold_ids = make_separable()
    result = kfold_verification(scores, labels, fold_ids)

    # when converting it for a report
    summary = result.to_dict()

    # then it has every documented key and survives strict JSON
    required = {
        "accuracy_mean", "accuracy_std", "auc", "tar_at_far_1e-3", "tar_at_far_1e-2", "eer", "threshold",
        "precision", "recall", "f1", "fold_accuracies", "fold_thresholds", "pairs",
    }  # fmt: skip
    assert required <= summary.keys(), f"missing keys {required - summary.keys()}"
    assert summary["pairs"] == 100, f"pairs should count every pair, got {summary['pairs']}"
    assert len(summary["fold_accuracies"]) == 10, "one accuracy per fold"  # type: ignore[arg-type]
    assert json.loads(json.dumps(summary, allow_nan=False)) == summary, "summary should round-trip JSON"


def test_metrics_accept_float32_scores_and_bool_labels() -> None:
    # given float32 scores (as embedders produce) and bool labels
    scores = HAND_SCORES.astype(np.float32)

    # when computing the EER
    eer, _ = equal_error_rate(scores, HAND_LABELS)

    # then the result matches the float64 one
    assert eer == pytest.approx(0.25), f"float32 input should give EER 0.25, got {eer}"


GOOD_SCORES = np.array([0.9, 0.1])
GOOD_LABELS = np.array([1, 0])


def raises_value_error(match: str) -> AbstractContextManager[object]:
    """Expect a ValueError whose message matches ``match``."""
    return pytest.raises(ValueError, match=match)


@pytest.mark.parametrize(
    ("function", "args", "expected"),
    [
        # valid input passes
        (roc_curve, (GOOD_SCORES, GOOD_LABELS), nullcontext()),
        # one score too many
        (roc_curve, (np.array([0.9, 0.1, 0.5]), GOOD_LABELS), raises_value_error("differ in length")),
        # no pairs at all
        (roc_curve, (np.array([]), np.array([])), raises_value_error("empty")),
        # only genuine pairs
        (roc_curve, (GOOD_SCORES, np.array([1, 1])), raises_value_error("both")),
        # only impostor pairs
        (roc_curve, (GOOD_SCORES, np.array([0, 0])), raises_value_error("both")),
        # a NaN score (e.g. from a zero-norm embedding) cannot be ranked
        (roc_curve, (np.array([0.9, np.nan]), GOOD_LABELS), raises_value_error("finite")),
        # a score matrix instead of a vector
        (roc_curve, (np.ones((2, 2)), np.ones((2, 2))), raises_value_error("1-D")),
        # label 2 is not a class
        (roc_curve, (GOOD_SCORES, np.array([2, 0])), raises_value_error("0/1")),
        # float labels (probabilities?) are not classes
        (roc_curve, (GOOD_SCORES, np.array([0.7, 0.2])), raises_value_error("0/1")),
        # string scores are not numbers
        (roc_curve, (np.array(["a", "b"]), GOOD_LABELS), raises_value_error("real numbers")),
        # FAR above 1
        (tar_at_far, (GOOD_SCORES, GOOD_LABELS, 1.5), raises_value_error("far_target")),
        # negative FAR
        (tar_at_far, (GOOD_SCORES, GOOD_LABELS, -0.1), raises_value_error("far_target")),
        # ragged curve
        (auc, (np.array([0.0, 1.0]), np.array([1.0])), raises_value_error("same length")),
        # FAR reversed (curve passed back to front)
        (auc, (np.array([1.0, 0.0]), np.array([0.0, 1.0])), raises_value_error("non-decreasing")),
        # a single class is fine for counting decisions
        (confusion_at, (np.array([0.1]), np.array([0]), 0.5), nullcontext()),
        # NaN threshold
        (confusion_at, (GOOD_SCORES, GOOD_LABELS, float("nan")), raises_value_error("NaN")),
        # smallest valid protocol: 2 folds, each with one pair of each class
        (
            kfold_verification,
            (np.array([0.9, 0.1, 0.8, 0.2]), np.array([1, 0, 1, 0]), np.array([0, 0, 1, 1])),
            nullcontext(),
        ),
        # fold ids shorter than the scores
        (kfold_verification, (GOOD_SCORES, GOOD_LABELS, np.array([0])), raises_value_error("folds")),
        # one fold only: nothing to choose a threshold on
        (kfold_verification, (GOOD_SCORES, GOOD_LABELS, np.array([0, 0])), raises_value_error("at least 2")),
        # float fold ids
        (kfold_verification, (GOOD_SCORES, GOOD_LABELS, np.array([0.0, 1.0])), raises_value_error("integer")),
        # fold 1 holds every impostor, so fold 0's training folds hold only genuine pairs
        (
            kfold_verification,
            (np.array([0.9, 0.8, 0.1]), np.array([1, 1, 0]), np.array([0, 0, 1])),
            raises_value_error("one class"),
        ),
    ],
)
def test_input_validation(
    function: Callable[..., object], args: tuple[object, ...], expected: AbstractContextManager[object]
) -> None:
    # given a call with valid or invalid arguments
    # when making it
    # then it either succeeds or raises the expected error
    with expected:
        function(*args)
