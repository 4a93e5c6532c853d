"""Face verification metrics and the LFW 10-fold protocol, as pure numpy functions.

Scores are similarities: higher means more likely the same person (pass e.g. cosine
similarity or negative Euclidean distance). A pair is predicted "same" when
``score >= threshold``. Labels are ``True``/``1`` for same-person (genuine) pairs and
``False``/``0`` for different-person (impostor) pairs.

Vocabulary: TAR (true accept rate) = genuine pairs accepted / genuine pairs; FAR (false
accept rate) = impostor pairs accepted / impostor pairs; FRR = 1 - TAR.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from vigil.typing import FloatArray

logger = logging.getLogger(__name__)

FAR_TARGETS = (1e-3, 1e-2)
"""FARs at which :func:`kfold_verification` reports TAR (the usual LFW/IJB operating points)."""

ScoreArray = npt.NDArray[np.floating[Any]]
LabelArray = npt.NDArray[np.bool_]
FoldArray = npt.NDArray[np.integer[Any]]


@dataclass(frozen=True)
class Confusion:
    """Counts of a binary same/different decision.

    Attributes:
        tp: Genuine pairs accepted.
        fp: Impostor pairs accepted.
        tn: Impostor pairs rejected.
        fn: Genuine pairs rejected.
    """

    tp: int
    fp: int
    tn: int
    fn: int

    def __add__(self, other: Confusion) -> Confusion:
        """Pool the counts of two confusions."""
        return Confusion(self.tp + other.tp, self.fp + other.fp, self.tn + other.tn, self.fn + other.fn)

    @property
    def total(self) -> int:
        """Number of pairs counted."""
        return self.tp + self.fp + self.tn + self.fn

    @property
    def accuracy(self) -> float:
        """Share of correct decisions; 0.0 when nothing was counted."""
        return _ratio(self.tp + self.tn, self.total)

    @property
    def precision(self) -> float:
        """Share of accepted pairs that are genuine; 0.0 when nothing was accepted."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        """Share of genuine pairs accepted (TAR); 0.0 when there are no genuine pairs."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall; 0.0 when both are 0."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)


@dataclass(frozen=True)
class VerificationResult:
    """Outcome of :func:`kfold_verification`.

    Attributes:
        fold_accuracies: Accuracy on each held-out fold, in ascending fold-id order.
        fold_thresholds: Threshold chosen on the other folds for each held-out fold.
        accuracy_mean: Mean of ``fold_accuracies``.
        accuracy_std: Population standard deviation (``np.std``, ddof 0) of
            ``fold_accuracies``, as LFW results are usually reported.
        precision: Precision pooled over all held-out predictions.
        recall: Recall pooled over all held-out predictions.
        f1: F1 pooled over all held-out predictions.
        auc: Area under the ROC curve over all pairs.
        eer: Equal error rate over all pairs.
        eer_threshold: Threshold at the equal error rate.
        tar_at_far_1e3: Largest TAR with FAR <= 1e-3 over all pairs.
        tar_at_far_1e2: Largest TAR with FAR <= 1e-2 over all pairs.
        threshold: Mean of ``fold_thresholds``: the threshold to deploy.
        pairs: Number of pairs evaluated.
    """

    fold_accuracies: tuple[float, ...]
    fold_thresholds: tuple[float, ...]
    accuracy_mean: float
    accuracy_std: float
    precision: float
    recall: float
    f1: float
    auc: float
    eer: float
    eer_threshold: float
    tar_at_far_1e3: float
    tar_at_far_1e2: float
    threshold: float
    pairs: int

    def to_dict(self) -> dict[str, float | int | list[float]]:
        """The result as JSON-ready values, keyed as in ``vigil bench`` reports.

        Returns:
            A dict with keys ``accuracy_mean``, ``accuracy_std``, ``auc``,
            ``tar_at_far_1e-3``, ``tar_at_far_1e-2``, ``eer``, ``eer_threshold``,
            ``threshold``, ``precision``, ``recall``, ``f1``, ``fold_accuracies``,
            ``fold_thresholds`` and ``pairs``.
        """
        return {
            "accuracy_mean": self.accuracy_mean,
            "accuracy_std": self.accuracy_std,
            "auc": self.auc,
            "tar_at_far_1e-3": self.tar_at_far_1e3,
            "tar_at_far_1e-2": self.tar_at_far_1e2,
            "eer": self.eer,
            "eer_threshold": self.eer_threshold,
            "threshold": self.threshold,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "fold_accuracies": list(self.fold_accuracies),
            "fold_thresholds": list(self.fold_thresholds),
            "pairs": self.pairs,
        }


def roc_curve(scores: ScoreArray, labels: LabelArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Exact ROC curve, one point per distinct score.

    Args:
        scores: ``(N,)`` float similarity scores, finite.
        labels: ``(N,)`` bool (or 0/1 integer) same-person labels; both classes present.

    Returns:
        ``(far, tar, thresholds)``, each ``(K + 1,)`` ``float64`` where ``K`` is the number
        of distinct scores. ``thresholds`` is descending and starts at ``+inf`` (accept
        nothing: ``far[0] == tar[0] == 0``); point ``k`` accepts ``scores >= thresholds[k]``.
        ``far`` and ``tar`` are non-decreasing and end at 1.

    Raises:
        ValueError: The inputs are not matching, non-empty 1-D arrays with finite scores,
            0/1 labels and both classes.
    """
    scores_64, labels_bool = _validate(scores, labels, require_both_classes=True)
    accepted_genuine, accepted_impostor, thresholds = _cumulative_counts(scores_64, labels_bool)
    genuine = int(labels_bool.sum())
    impostor = labels_bool.size - genuine
    return accepted_impostor / impostor, accepted_genuine / genuine, thresholds


def auc(far: FloatArray, tar: FloatArray) -> float:
    """Area under a ROC curve by the trapezoidal rule.

    Args:
        far: ``(K,)`` non-decreasing false accept rates, e.g. from :func:`roc_curve`.
        tar: ``(K,)`` true accept rates at the same points.

    Returns:
        The area, in ``[0, 1]`` for a curve from (0, 0) to (1, 1).

    Raises:
        ValueError: The arrays differ in shape, have fewer than 2 points, or ``far``
            decreases somewhere.
    """
    far_64 = np.asarray(far, dtype=np.float64)
    tar_64 = np.asarray(tar, dtype=np.float64)
    if far_64.ndim != 1 or far_64.shape != tar_64.shape or far_64.size < 2:
        raise ValueError(
            "far and tar must be 1-D arrays of the same length >= 2, "
            f"got shapes {far_64.shape} and {tar_64.shape}"
        )
    if np.any(np.diff(far_64) < 0):
        raise ValueError("far must be non-decreasing; pass the curve in roc_curve order")
    return float(np.sum(np.diff(far_64) * (tar_64[1:] + tar_64[:-1]) / 2.0))


def tar_at_far(scores: ScoreArray, labels: LabelArray, far_target: float) -> float:
    """Largest TAR whose FAR does not exceed ``far_target``.

    The threshold is chosen on the impostor scores: the lowest distinct score that lets at
    most ``floor(far_target * impostors)`` impostor pairs through (ties count in full).

    Args:
        scores: ``(N,)`` float similarity scores, finite.
        labels: ``(N,)`` bool (or 0/1) same-person labels; both classes present.
        far_target: Highest acceptable FAR, in ``[0, 1]``.

    Returns:
        The TAR at that threshold (0.0 if even the highest score admits too many impostors).

    Raises:
        ValueError: Invalid inputs (see :func:`roc_curve`) or ``far_target`` outside ``[0, 1]``.

    Example:
        >>> scores = np.array([0.9, 0.8, 0.7, 0.6])
        >>> labels = np.array([True, False, True, False])
        >>> tar_at_far(scores, labels, 0.0)
        0.5
    """
    tar, _ = _operating_point_at_far(scores, labels, far_target)
    return tar


def threshold_at_far(scores: ScoreArray, labels: LabelArray, far_target: float) -> float:
    """The threshold :func:`tar_at_far` uses: accept ``scores >= threshold``.

    Args:
        scores: ``(N,)`` float similarity scores, finite.
        labels: ``(N,)`` bool (or 0/1) same-person labels; both classes present.
        far_target: Highest acceptable FAR, in ``[0, 1]``.

    Returns:
        The threshold; ``+inf`` when no threshold keeps the FAR low enough.

    Raises:
        ValueError: Invalid inputs (see :func:`roc_curve`) or ``far_target`` outside ``[0, 1]``.
    """
    _, threshold = _operating_point_at_far(scores, labels, far_target)
    return threshold


def equal_error_rate(scores: ScoreArray, labels: LabelArray) -> tuple[float, float]:
    """Equal error rate: where FAR equals FRR (``1 - TAR``).

    When no ROC point has FAR exactly equal to FRR, both are interpolated linearly between
    the two points where ``FAR - FRR`` changes sign, and so is the threshold (the ``+inf``
    first point is replaced by its neighbour's threshold).

    Args:
        scores: ``(N,)`` float similarity scores, finite.
        labels: ``(N,)`` bool (or 0/1) same-person labels; both classes present.

    Returns:
        ``(eer, threshold)``: the rate in ``[0, 1]`` and the similarity where it occurs.

    Raises:
        ValueError: Invalid inputs (see :func:`roc_curve`).
    """
    far, tar, thresholds = roc_curve(scores, labels)
    gap = far - (1.0 - tar)  # -1 at the first point, +1 at the last, non-decreasing
    crossing = int(np.argmax(gap >= 0.0))
    if gap[crossing] == 0.0:
        return float(far[crossing]), float(thresholds[crossing])
    before = crossing - 1
    weight = -gap[before] / (gap[crossing] - gap[before])
    eer = far[before] + weight * (far[crossing] - far[before])
    high = thresholds[before] if np.isfinite(thresholds[before]) else thresholds[crossing]
    threshold = high + weight * (thresholds[crossing] - high)
    return float(eer), float(threshold)


def best_threshold(scores: ScoreArray, labels: LabelArray) -> float:
    """Threshold that maximises accuracy on the given pairs.

    Every distinct way of splitting the sorted scores is tried. The returned threshold is
    the midpoint between the lowest accepted score and the highest rejected one (or just
    above the top score / at the bottom score when all are rejected / accepted). Ties in
    accuracy go to the highest threshold, i.e. the fewest false accepts.

    Args:
        scores: ``(N,)`` float similarity scores, finite.
        labels: ``(N,)`` bool (or 0/1) same-person labels; both classes present.

    Returns:
        The threshold: accept ``scores >= threshold``.

    Raises:
        ValueError: Invalid inputs (see :func:`roc_curve`).
    """
    scores_64, labels_bool = _validate(scores, labels, require_both_classes=True)
    accepted_genuine, accepted_impostor, thresholds = _cumulative_counts(scores_64, labels_bool)
    impostor = labels_bool.size - int(labels_bool.sum())
    correct = accepted_genuine + (impostor - accepted_impostor)
    best = int(np.argmax(correct))  # first maximum = highest threshold
    if best == 0:
        return float(np.nextafter(thresholds[1], np.inf))
    if best == thresholds.size - 1:
        return float(thresholds[best])
    lowest_accepted, highest_rejected = thresholds[best], thresholds[best + 1]
    midpoint = (lowest_accepted + highest_rejected) / 2.0
    # Adjacent floats can round the midpoint down onto the rejected score.
    return float(midpoint if midpoint > highest_rejected else lowest_accepted)


def confusion_at(scores: ScoreArray, labels: LabelArray, threshold: float) -> Confusion:
    """Confusion counts when accepting ``scores >= threshold``.

    Args:
        scores: ``(N,)`` float similarity scores, finite.
        labels: ``(N,)`` bool (or 0/1) same-person labels; one class may be absent.
        threshold: Decision threshold on the similarity.

    Returns:
        The counts.

    Raises:
        ValueError: The inputs are not matching, non-empty 1-D arrays with finite scores
            and 0/1 labels, or ``threshold`` is NaN.
    """
    scores_64, labels_bool = _validate(scores, labels, require_both_classes=False)
    if np.isnan(threshold):
        raise ValueError("threshold must not be NaN")
    accepted = scores_64 >= threshold
    return Confusion(
        tp=int(np.sum(accepted & labels_bool)),
        fp=int(np.sum(accepted & ~labels_bool)),
        tn=int(np.sum(~accepted & ~labels_bool)),
        fn=int(np.sum(~accepted & labels_bool)),
    )


def kfold_verification(scores: ScoreArray, labels: LabelArray, folds: FoldArray) -> VerificationResult:
    """The LFW "unrestricted" protocol: k-fold accuracy with thresholds chosen out of fold.

    For each fold, the accuracy-maximising threshold (:func:`best_threshold`) is chosen on
    the pairs of all other folds and applied to the held-out fold. Threshold-free metrics
    (AUC, EER, TAR@FAR) are computed once on all pairs.

    Args:
        scores: ``(N,)`` float similarity scores, finite.
        labels: ``(N,)`` bool (or 0/1) same-person labels; both classes present.
        folds: ``(N,)`` integer fold id of each pair; at least two distinct ids.

    Returns:
        Per-fold and pooled metrics.

    Raises:
        ValueError: Invalid scores/labels (see :func:`roc_curve`), ``folds`` of another
            length or with fewer than 2 ids, or a fold whose complement lacks a class.
    """
    scores_64, labels_bool = _validate(scores, labels, require_both_classes=True)
    fold_ids = np.asarray(folds)
    if fold_ids.shape != scores_64.shape or not np.issubdtype(fold_ids.dtype, np.integer):
        raise ValueError(
            f"folds must be a 1-D integer array as long as scores ({scores_64.size}), "
            f"got shape {fold_ids.shape} dtype {fold_ids.dtype}"
        )
    unique_folds = np.unique(fold_ids)
    if unique_folds.size < 2:
        raise ValueError(f"need at least 2 folds for cross-validation, got {unique_folds.size}")

    fold_accuracies: list[float] = []
    fold_thresholds: list[float] = []
    pooled = Confusion(0, 0, 0, 0)
    for fold in unique_folds:
        held_out = fold_ids == fold
        train_labels = labels_bool[~held_out]
        if train_labels.all() or not train_labels.any():
            raise ValueError(f"the folds other than {fold} hold only one class; cannot choose a threshold")
        threshold = best_threshold(scores_64[~held_out], train_labels)
        confusion = confusion_at(scores_64[held_out], labels_bool[held_out], threshold)
        logger.debug("fold %d: threshold %.6g accuracy %.4f", fold, threshold, confusion.accuracy)
        fold_accuracies.append(confusion.accuracy)
        fold_thresholds.append(threshold)
        pooled = pooled + confusion

    far, tar, _ = roc_curve(scores_64, labels_bool)
    eer, eer_threshold = equal_error_rate(scores_64, labels_bool)
    tar_strict, tar_loose = (tar_at_far(scores_64, labels_bool, target) for target in FAR_TARGETS)
    return VerificationResult(
        fold_accuracies=tuple(fold_accuracies),
        fold_thresholds=tuple(fold_thresholds),
        accuracy_mean=float(np.mean(fold_accuracies)),
        accuracy_std=float(np.std(fold_accuracies)),
        precision=pooled.precision,
        recall=pooled.recall,
        f1=pooled.f1,
        auc=auc(far, tar),
        eer=eer,
        eer_threshold=eer_threshold,
        tar_at_far_1e3=tar_strict,
        tar_at_far_1e2=tar_loose,
        threshold=float(np.mean(fold_thresholds)),
        pairs=int(scores_64.size),
    )


def _ratio(numerator: int, denominator: int) -> float:
    """``numerator / denominator``, or 0.0 when the denominator is 0."""
    return numerator / denominator if denominator else 0.0


def _validate(
    scores: ScoreArray, labels: LabelArray, *, require_both_classes: bool
) -> tuple[FloatArray, LabelArray]:
    """Check scores and labels and convert them to ``float64`` and ``bool`` arrays."""
    scores_array = np.asarray(scores)
    labels_array = np.asarray(labels)
    if scores_array.ndim != 1 or labels_array.ndim != 1:
        raise ValueError(
            f"scores and labels must be 1-D, got shapes {scores_array.shape} and {labels_array.shape}"
        )
    if scores_array.size != labels_array.size:
        raise ValueError(f"scores and labels differ in length: {scores_array.size} vs {labels_array.size}")
    if scores_array.size == 0:
        raise ValueError("scores and labels are empty; need at least one pair")
    if not np.issubdtype(scores_array.dtype, np.number) or np.issubdtype(
        scores_array.dtype, np.complexfloating
    ):
        raise ValueError(f"scores must be real numbers, got dtype {scores_array.dtype}")
    scores_64 = scores_array.astype(np.float64)
    if not np.all(np.isfinite(scores_64)):
        raise ValueError(f"scores must be finite, got {int(np.sum(~np.isfinite(scores_64)))} NaN/inf values")
    if labels_array.dtype != np.bool_:
        if not np.issubdtype(labels_array.dtype, np.integer) or not np.all(np.isin(labels_array, (0, 1))):
            raise ValueError(f"labels must be bool or 0/1 integers, got dtype {labels_array.dtype}")
        labels_array = labels_array.astype(np.bool_)
    if require_both_classes and (labels_array.all() or not labels_array.any()):
        raise ValueError("labels must contain both same-person (1) and different-person (0) pairs")
    return scores_64, labels_array


def _cumulative_counts(scores: FloatArray, labels: LabelArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Genuine and impostor pairs accepted at each distinct threshold.

    Returns:
        ``(accepted_genuine, accepted_impostor, thresholds)``, each ``(K + 1,)`` float64,
        for thresholds ``+inf`` then each distinct score in descending order.
    """
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    sorted_labels = labels[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    accepted_genuine = np.cumsum(sorted_labels, dtype=np.float64)[last_of_run]
    accepted_impostor = (last_of_run + 1).astype(np.float64) - accepted_genuine
    return (
        np.r_[0.0, accepted_genuine],
        np.r_[0.0, accepted_impostor],
        np.r_[np.inf, sorted_scores[last_of_run]],
    )


def _operating_point_at_far(scores: ScoreArray, labels: LabelArray, far_target: float) -> tuple[float, float]:
    """``(tar, threshold)`` of the lowest threshold whose FAR is at most ``far_target``."""
    if not 0.0 <= far_target <= 1.0:
        raise ValueError(f"far_target must be in [0, 1], got {far_target}")
    far, tar, thresholds = roc_curve(scores, labels)
    # far is non-decreasing, so the admissible points are a prefix; take its last point.
    # A tiny tolerance keeps e.g. 3/3000 admissible for a 1e-3 target despite rounding.
    last = int(np.searchsorted(far, far_target * (1.0 + 1e-9), side="right")) - 1
    return float(tar[last]), float(thresholds[last])
