"""Thresholds fitted to a target false-accept rate, with exact confidence intervals.

Pure numpy/scipy functions behind ``vigil calibrate`` (``trainer/calibrate.py`` describes
the method). Scores are similarities, higher meaning more alike; a pair is accepted when
``score >= threshold``. Genuine pairs show one person twice, impostor pairs two people.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

from trainer.metrics import ScoreArray, threshold_at_far
from trainer.openset import OperatingPoint
from vigil.errors import CalibrationError

logger = logging.getLogger(__name__)

CONFIDENCE = 0.95
"""Confidence of the FAR intervals, and of the data-sufficiency rule."""

THRESHOLD_DECIMALS = 4
"""Stored thresholds are rounded up to this many decimals (calibration files stay readable)."""


@dataclass(frozen=True)
class VerificationFit:
    """A 1:1 threshold and what it achieves on the pairs it was fitted on.

    Attributes:
        threshold: Accept ``score >= threshold``.
        target_far: The FAR it was fitted to.
        far: Impostor pairs accepted / impostor pairs.
        tar: Genuine pairs accepted / genuine pairs.
        false_accepts: Impostor pairs accepted.
        impostor_pairs: Impostor pairs scored.
        genuine_pairs: Genuine pairs scored.
        far_ci_low: Lower end of the Clopper-Pearson interval on the FAR.
        far_ci_high: Upper end of that interval.
        confidence: The interval's confidence (two-sided).
    """

    threshold: float
    target_far: float
    far: float
    tar: float
    false_accepts: int
    impostor_pairs: int
    genuine_pairs: int
    far_ci_low: float
    far_ci_high: float
    confidence: float


def min_impostor_pairs(target_far: float, confidence: float = CONFIDENCE) -> int:
    """The fewest impostor pairs that can demonstrate a FAR of ``target_far``.

    With ``n`` impostor pairs and not one false accept, the exact one-sided upper
    confidence bound on the FAR is ``1 - (1 - confidence) ** (1 / n)``. It reaches the
    target only from ``n = ln(1 - confidence) / ln(1 - target_far)``, about
    ``3 / target_far`` at 95 % (the "rule of three"): with fewer pairs, even a threshold
    that lets no impostor through does not show that the FAR is at or below the target.

    Args:
        target_far: The FAR to demonstrate, in ``(0, 1)``.
        confidence: Confidence of the bound, in ``(0, 1)``.

    Returns:
        The number of impostor pairs, e.g. 2995 for ``1e-3`` at 95 %.

    Raises:
        ValueError: An argument outside ``(0, 1)``.
    """
    if not (0.0 < target_far < 1.0 and 0.0 < confidence < 1.0):
        raise ValueError(f"target_far and confidence must be in (0, 1), got {target_far} and {confidence}")
    return math.ceil(math.log1p(-confidence) / math.log1p(-target_far))


def require_impostor_pairs(target_far: float, impostor_pairs: int) -> None:
    """Refuse a target FAR that ``impostor_pairs`` cannot demonstrate (:func:`min_impostor_pairs`).

    Raises:
        CalibrationError: Too few impostor pairs; the message says how many are needed.
    """
    needed = min_impostor_pairs(target_far)
    if impostor_pairs < needed:
        raise CalibrationError(
            f"a FAR of {target_far:g} needs at least {needed} impostor pairs (about 3/FAR, so that zero "
            f"false accepts would show it at {CONFIDENCE:.0%} confidence), the data gives {impostor_pairs}; "
            "add people or photos, or pass a higher --target-far"
        )


def clopper_pearson(successes: int, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided confidence interval on a binomial proportion.

    Args:
        successes: Events counted (e.g. false accepts), ``0 <= successes <= trials``.
        trials: Trials (e.g. impostor pairs), at least 1.
        confidence: Coverage of the interval, in ``(0, 1)``.

    Returns:
        ``(low, high)``; ``low`` is 0 when ``successes`` is 0 and ``high`` is 1 when it
        equals ``trials``.

    Raises:
        ValueError: Counts out of range.

    Example:
        >>> low, high = clopper_pearson(0, 3000)
        >>> round(high, 5)
        0.00123
    """
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials >= 1, got {successes} of {trials}")
    tail = (1.0 - confidence) / 2.0
    low = 0.0 if successes == 0 else float(beta.ppf(tail, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(beta.ppf(1.0 - tail, successes + 1, trials - successes))
    return low, high


def round_up_threshold(threshold: float) -> float:
    """:data:`THRESHOLD_DECIMALS` decimals, rounded up: a stored rule is never more permissive."""
    scale = 10.0**THRESHOLD_DECIMALS
    return math.ceil(threshold * scale) / scale


def fit_verification(
    genuine: ScoreArray, impostor: ScoreArray, target_far: float, confidence: float = CONFIDENCE
) -> VerificationFit:
    """The lowest threshold whose FAR on ``impostor`` is at most ``target_far``.

    The threshold is :func:`trainer.metrics.threshold_at_far`'s, rounded up by
    :func:`round_up_threshold` and clipped to the cosine range ``[-1, 1]``; FAR, TAR and
    the interval are measured at the rounded threshold, the one that is stored.

    Args:
        genuine: ``(G,)`` float scores of genuine pairs, finite, ``G >= 1``.
        impostor: ``(I,)`` float scores of impostor pairs, finite, ``I >= 1``.
        target_far: Highest acceptable FAR, in ``(0, 1)``.
        confidence: Coverage of the FAR interval.

    Returns:
        The threshold and its figures.

    Raises:
        CalibrationError: Fewer impostor pairs than :func:`min_impostor_pairs` asks for (at 95 %),
            or ties at the top impostor score leave no threshold meeting the target.
        ValueError: Empty or non-finite scores.
    """
    genuine_64 = np.asarray(genuine, dtype=np.float64)
    impostor_64 = np.asarray(impostor, dtype=np.float64)
    require_impostor_pairs(target_far, impostor_64.size)
    scores = np.concatenate([genuine_64, impostor_64])
    labels = np.concatenate([np.ones(genuine_64.size, bool), np.zeros(impostor_64.size, bool)])
    threshold = threshold_at_far(scores, labels, target_far)
    if not math.isfinite(threshold):
        raise CalibrationError(
            f"no threshold keeps the FAR at or below {target_far:g}: too many impostor pairs tie at the "
            "top score (duplicate photos of different people?); check the data"
        )
    threshold = min(max(round_up_threshold(threshold), -1.0), 1.0)
    false_accepts = int(np.sum(impostor_64 >= threshold))
    low, high = clopper_pearson(false_accepts, impostor_64.size, confidence)
    return VerificationFit(
        threshold=threshold,
        target_far=target_far,
        far=false_accepts / impostor_64.size,
        tar=float(np.mean(genuine_64 >= threshold)),
        false_accepts=false_accepts,
        impostor_pairs=int(impostor_64.size),
        genuine_pairs=int(genuine_64.size),
        far_ci_low=low,
        far_ci_high=high,
        confidence=confidence,
    )


def per_comparison_far(target_fpir: float, gallery_identities: int) -> float:
    """The FAR per comparison that gives ``target_fpir`` against a gallery of that many people.

    A stranger is compared with each of ``N`` enrolled people and is taken for someone
    when any comparison clears the threshold; with independent comparisons
    ``FPIR = 1 - (1 - p) ** N``, so ``p = 1 - (1 - target_fpir) ** (1 / N)``.

    Example:
        >>> round(per_comparison_far(1e-3, 10), 7)
        0.0001
    """
    return -math.expm1(math.log1p(-target_fpir) / gallery_identities)


def rules_from_impostors(
    genuine: ScoreArray, impostor: ScoreArray, target_fpir: float, sizes: Sequence[int]
) -> list[tuple[int, OperatingPoint]]:
    """Open-set rules (margin 0) per gallery size, from 1:1 score distributions.

    For each size ``N`` (ascending), the threshold is :func:`fit_verification`'s at the
    per-comparison FAR :func:`per_comparison_far` gives. Sizes stop at the first whose
    per-comparison FAR the impostor pairs cannot support (:func:`min_impostor_pairs`).
    Each point reports ``fpir = 1 - (1 - FAR) ** N``, ``dir`` = the TAR (a known face's
    own comparison clears the threshold) and ``misidentification_rate =
    1 - (1 - FAR) ** (N - 1)``, an upper bound (some other enrolled person clears it).

    Args:
        genuine: ``(G,)`` genuine pair scores.
        impostor: ``(I,)`` impostor pair scores.
        target_fpir: The FPIR to meet, in ``(0, 1)``.
        sizes: Gallery sizes to fit, ascending.

    Returns:
        ``(size, point)`` for each supported size; the largest size last.

    Raises:
        CalibrationError: Not even a one-person gallery is supported (too few impostor pairs).
    """
    fitted: list[tuple[int, OperatingPoint]] = []
    for size in sorted(sizes):
        comparison_far = per_comparison_far(target_fpir, size)
        if np.size(impostor) < min_impostor_pairs(comparison_far) and fitted:
            logger.info(
                "target FPIR %g: galleries of %d people need %d impostor pairs; rules stop at %d people",
                target_fpir,
                size,
                min_impostor_pairs(comparison_far),
                fitted[-1][0],
            )
            break
        fit = fit_verification(genuine, impostor, comparison_far)
        fitted.append(
            (
                size,
                OperatingPoint(
                    threshold=fit.threshold,
                    margin=0.0,
                    fpir=1.0 - (1.0 - fit.far) ** size,
                    dir=fit.tar,
                    misidentification_rate=1.0 - (1.0 - fit.far) ** (size - 1),
                ),
            )
        )
    return fitted
