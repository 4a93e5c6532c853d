"""Open-set identification metrics, as pure numpy functions.

Each probe is searched against a gallery of enrolled people. *Known* probes are of someone
enrolled; *unknown* probes are not. For each probe we have its best identity's score, its
lead (margin) over the runner-up, and for known probes whether the best identity is the
right one. A probe is *accepted* when ``top >= threshold`` and ``lead >= margin``.

Vocabulary (ISO/IEC 19795-1, NIST FRVT 1:N):

- FPIR (false-positive identification rate): unknown probes accepted / unknown probes.
- DIR (detection and identification rate): known probes accepted *as the right person* /
  known probes. Known probes accepted as the wrong person are misidentifications.
- Rank-1: known probes whose best identity is right, whatever the score (closed-set).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from trainer.metrics import LabelArray, ScoreArray, roc_curve, threshold_at_far
from vigil.typing import FloatArray


@dataclass(frozen=True)
class OpenSetScores:
    """Search results of known and unknown probes.

    Attributes:
        known_top: ``(K,)`` best identity's score for each known probe.
        known_lead: ``(K,)`` best minus second-best identity's score (``inf`` with one candidate).
        known_correct: ``(K,)`` whether the best identity is the probe's own.
        unknown_top: ``(U,)`` best identity's score for each unknown probe.
        unknown_lead: ``(U,)`` as ``known_lead``.
    """

    known_top: ScoreArray
    known_lead: ScoreArray
    known_correct: LabelArray
    unknown_top: ScoreArray
    unknown_lead: ScoreArray

    def __post_init__(self) -> None:
        if not len(self.known_top) or not len(self.unknown_top):
            raise ValueError("open-set metrics need both known and unknown probes")
        if not len(self.known_top) == len(self.known_lead) == len(self.known_correct):
            raise ValueError("known_top, known_lead and known_correct differ in length")
        if len(self.unknown_top) != len(self.unknown_lead):
            raise ValueError("unknown_top and unknown_lead differ in length")


def pool(parts: Sequence[OpenSetScores]) -> OpenSetScores:
    """One score set from several (e.g. searches against several random galleries)."""
    return OpenSetScores(
        known_top=np.concatenate([part.known_top for part in parts]),
        known_lead=np.concatenate([part.known_lead for part in parts]),
        known_correct=np.concatenate([part.known_correct for part in parts]),
        unknown_top=np.concatenate([part.unknown_top for part in parts]),
        unknown_lead=np.concatenate([part.unknown_lead for part in parts]),
    )


@dataclass(frozen=True)
class OperatingPoint:
    """An open-set decision rule and what it achieves.

    Attributes:
        threshold: Minimum best score to accept.
        margin: Minimum lead over the runner-up to accept.
        fpir: Unknown probes accepted / unknown probes.
        dir: Known probes accepted as the right person / known probes.
        misidentification_rate: Known probes accepted as the wrong person / known probes.
    """

    threshold: float
    margin: float
    fpir: float
    dir: float
    misidentification_rate: float


def rank1(scores: OpenSetScores) -> float:
    """Share of known probes whose best identity is right (closed-set rank-1 accuracy)."""
    return float(np.mean(scores.known_correct))


def operating_point(scores: OpenSetScores, threshold: float, margin: float) -> OperatingPoint:
    """What the rule ``top >= threshold and lead >= margin`` achieves on ``scores``."""
    known = (scores.known_top >= threshold) & (scores.known_lead >= margin)
    unknown = (scores.unknown_top >= threshold) & (scores.unknown_lead >= margin)
    return OperatingPoint(
        threshold=float(threshold),
        margin=float(margin),
        fpir=float(np.mean(unknown)),
        dir=float(np.mean(known & scores.known_correct)),
        misidentification_rate=float(np.mean(known & ~scores.known_correct)),
    )


def dir_fpir_curve(scores: OpenSetScores) -> tuple[FloatArray, FloatArray]:
    """DIR against FPIR as the threshold sweeps (margin 0): ``(fpir, dir)``, both non-decreasing."""
    floor = min(float(np.min(scores.unknown_top)), float(np.min(scores.known_top))) - 1.0
    # A misidentified known probe never counts towards DIR, whatever the threshold.
    known = np.where(scores.known_correct, scores.known_top, floor)
    labels = np.concatenate([np.zeros(len(scores.unknown_top), bool), np.ones(len(known), bool)])
    fpir, dir_, _ = roc_curve(np.concatenate([scores.unknown_top, known]), labels)
    return fpir, dir_


def threshold_at_fpir(scores: OpenSetScores, target_fpir: float, margin: float = 0.0) -> float:
    """Lowest threshold that, with ``margin``, accepts at most ``floor(target · U)`` unknown probes.

    Returns ``+inf`` when no threshold is strict enough (ties at the top score).
    """
    # Probes the margin rejects are never accepted: give them a score below every threshold.
    unknown = np.where(scores.unknown_lead >= margin, scores.unknown_top, -np.inf)
    known = np.where(scores.known_lead >= margin, scores.known_top, -np.inf)
    finite_floor = min(float(np.min(scores.unknown_top)), float(np.min(scores.known_top))) - 1.0
    combined = np.maximum(np.concatenate([unknown, known]), finite_floor)
    labels = np.concatenate([np.zeros(len(unknown), bool), np.ones(len(known), bool)])
    return threshold_at_far(combined, labels, target_fpir)


def dir_at_fpir(scores: OpenSetScores, target_fpir: float, margin: float = 0.0) -> OperatingPoint:
    """The operating point at the threshold :func:`threshold_at_fpir` picks."""
    return operating_point(scores, threshold_at_fpir(scores, target_fpir, margin), margin)


def fit_operating_point(
    scores: OpenSetScores,
    target_fpir: float,
    max_misidentification: float = 1e-3,
    margins: Sequence[float] = (0.0, 0.01, 0.02, 0.03, 0.05),
) -> OperatingPoint:
    """A threshold for strangers and a margin for look-alikes.

    The threshold keeps FPIR (strangers taken for someone enrolled) at ``target_fpir``.
    The margin guards against the other error, naming the wrong enrolled person: the
    smallest margin (from ``margins``) whose misidentification rate is at most
    ``max_misidentification`` is used, because every bit of margin also turns away some
    right answers. When no margin gets there, the one with the fewest misidentifications.
    """
    if not margins:
        raise ValueError("give at least one margin to try")
    points = [dir_at_fpir(scores, target_fpir, margin) for margin in sorted(margins)]
    good_enough = [point for point in points if point.misidentification_rate <= max_misidentification]
    if good_enough:
        return good_enough[0]
    return min(points, key=lambda point: (point.misidentification_rate, point.margin))
