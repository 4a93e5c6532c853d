"""A head's calibration, by quantile mapping the backbone's calibration into the head's space.

A head changes the score distribution, so the backbone's thresholds mean nothing in its
space. Refitting the open-set rules needs the large open-set protocol of ``vigil bench
identify``; instead every threshold ``t`` of the backbone's calibration is carried over at
the same false-accept rate among impostor pairs:

1. sample impostor pairs (different people) among held-out images, and score each pair in
   both spaces (the same pairs, so the two samples differ only by the head);
2. ``far = share of base impostor scores >= t``;
3. the head threshold ``t'`` is the score that the same share of head impostor scores
   reaches (the ``1 − far`` quantile).

A margin ``m`` (the lead of the best person over the runner-up) is a score *difference*
just below the threshold, so it is mapped locally: ``m' = map(t) − map(t − m)``. Where the
head stretches or squeezes the upper tail of the impostor scores, the margin follows that
same local stretch, which a global ratio of spreads would miss.

A threshold above every sampled base impostor score (``far = 0``) cannot be placed by
quantile; it is extrapolated past the highest head impostor score by the ratio of the two
samples' standard deviations, and counted in the calibration's ``data``.

The identification figures (FPIR, DIR, ...) are the base calibration's: the mapping keeps
the impostor rates by construction, and the head's own DIR is not measured here. The
verification figures (FAR, TAR) are measured again in the head's space on the held-out
pairs.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from indexer.calibration import (
    Calibration,
    GallerySizeRule,
    VerificationCalibration,
)
from vigil.typing import Embeddings, FloatArray

logger = logging.getLogger(__name__)

MAX_IMPOSTOR_PAIRS = 2_000_000
"""Impostor pairs sampled for the mapping: enough to place thresholds at a FAR of 1e-5 on
20 pairs, and 2 M cosines of 128-d vectors take about a second."""
METHOD = "impostor quantile mapping from the base calibration"
MARGIN_METHOD = "local: map(threshold) - map(threshold - margin)"
_SCORE_RANGE = (-1.0, 1.0)
_MARGIN_RANGE = (0.0, 2.0)

IndexArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ImpostorScores:
    """The same impostor pairs scored in the backbone's and in the head's space.

    Attributes:
        base: ``(M,)`` cosine similarities in the backbone's space.
        head: ``(M,)`` cosine similarities in the head's space, pair for pair.
    """

    base: FloatArray
    head: FloatArray

    def __post_init__(self) -> None:
        if self.base.shape != self.head.shape or self.base.ndim != 1 or self.base.size == 0:
            raise ValueError(
                "need two equally long, non-empty 1-D score arrays, "
                f"got {self.base.shape} and {self.head.shape}"
            )


class QuantileMap:
    """The monotone map from base to head scores that keeps the impostor accept rate.

    Args:
        impostors: The impostor pairs scored in both spaces.

    Example:
        >>> scores = ImpostorScores(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.5, 0.6, 0.7, 0.8]))
        >>> QuantileMap(scores).threshold(0.3)  # half the impostors reach 0.3, half reach 0.7
        0.7
    """

    def __init__(self, impostors: ImpostorScores) -> None:
        self._base = np.sort(impostors.base)
        self._head = np.sort(impostors.head)
        base_spread, head_spread = float(np.std(self._base)), float(np.std(self._head))
        self._spread_ratio = head_spread / base_spread if base_spread > 0 else 1.0
        self.extrapolated = 0

    @property
    def pairs(self) -> int:
        return int(self._base.size)

    def far(self, threshold: float) -> float:
        """Share of base impostor scores ``>= threshold``."""
        return float(self._base.size - np.searchsorted(self._base, threshold, side="left")) / self._base.size

    def threshold(self, base_threshold: float) -> float:
        """The head score accepted by as many impostor pairs as ``base_threshold`` in base space.

        Counts a call in ``extrapolated`` when ``base_threshold`` is above every base impostor.
        """
        accepted = self._base.size - int(np.searchsorted(self._base, base_threshold, side="left"))
        if accepted == 0:
            self.extrapolated += 1
            mapped = self._head[-1] + (base_threshold - self._base[-1]) * self._spread_ratio
        else:
            # The accepted-th highest head score: exactly `accepted` head impostors reach it.
            mapped = self._head[self._head.size - accepted]
        return float(np.clip(mapped, *_SCORE_RANGE))

    def margin(self, base_threshold: float, base_margin: float) -> float:
        """A margin below ``base_threshold``, mapped locally (see the module docstring)."""
        if base_margin <= 0.0:
            return 0.0
        mapped = self.threshold(base_threshold) - self.threshold(base_threshold - base_margin)
        return float(np.clip(mapped, *_MARGIN_RANGE))


def sample_impostor_pairs(
    identities: npt.NDArray[Any], max_pairs: int = MAX_IMPOSTOR_PAIRS, seed: int = 0
) -> tuple[IndexArray, IndexArray]:
    """Pairs of rows of different identities: all of them, or ``max_pairs`` drawn at random.

    Args:
        identities: ``(N,)`` identity of each row (any comparable values, e.g. folder names).
        max_pairs: Most pairs returned. Beyond it, pairs are drawn uniformly (with
            replacement: at 2 M draws among many more pairs, repeats are rare and harmless).
        seed: Seed of the draw.

    Returns:
        ``(first, second)`` row indices, ``(M,)`` int64 each, ``first != second``.

    Raises:
        ValueError: Fewer than two distinct identities.
    """
    codes = np.unique(np.asarray(identities), return_inverse=True)[1].ravel()
    if codes.size == 0 or codes.max() < 1:
        raise ValueError("impostor pairs need images of at least two people")
    count = codes.size
    if count * (count - 1) // 2 <= max_pairs:
        first, second = np.triu_indices(count, k=1)
    else:
        random = np.random.default_rng(seed)
        first = random.integers(0, count, size=max_pairs * 2)
        second = random.integers(0, count, size=max_pairs * 2)
    keep = codes[first] != codes[second]
    first, second = first[keep][:max_pairs], second[keep][:max_pairs]
    return first.astype(np.int64), second.astype(np.int64)


def cosine_scores(embeddings: Embeddings, first: IndexArray, second: IndexArray) -> FloatArray:
    """Cosine similarity of rows ``first[i]`` and ``second[i]`` of ``(N, D)`` embeddings (any norm)."""
    unit = embeddings.astype(np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    scores = np.empty(first.size, np.float64)
    step = 50_000  # each chunk gathers 2 x 50k x D float64 rows (100 MB at D = 128), not 2 M
    for start in range(0, first.size, step):
        rows = slice(start, start + step)
        scores[rows] = np.einsum("ij,ij->i", unit[first[rows]], unit[second[rows]])
    return scores


def map_calibration(
    base: Calibration,
    impostors: ImpostorScores,
    *,
    embedder_version: str,
    head_genuine: FloatArray | None = None,
    data: dict[str, str | int | float] | None = None,
) -> Calibration:
    """The base calibration carried into a head's space at equal impostor quantiles.

    Args:
        base: The calibration in force for the backbone.
        impostors: Held-out impostor pairs scored in both spaces.
        embedder_version: The head's space (``head_space_version``).
        head_genuine: ``(G,)`` held-out genuine pair scores in the head's space, to measure
            the verification TAR there (without them the base TAR is kept).
        data: Extra entries for the calibration's ``data`` (dataset, head version, ...).

    Returns:
        A new calibration: every identification threshold and margin (including each
        ``by_gallery_size`` rule) and the verification threshold mapped.
    """
    mapping = QuantileMap(impostors)
    identification = [
        rules.model_copy(
            update={
                "threshold": mapping.threshold(rules.threshold),
                "margin": mapping.margin(rules.threshold, rules.margin),
                "by_gallery_size": [
                    GallerySizeRule(
                        gallery_identities=rule.gallery_identities,
                        threshold=mapping.threshold(rule.threshold),
                        margin=mapping.margin(rule.threshold, rule.margin),
                        fpir=rule.fpir,
                        dir=rule.dir,
                    )
                    for rule in rules.by_gallery_size
                ],
            }
        )
        for rules in base.identification
    ]
    verification = _map_verification(base.verification, mapping, impostors, head_genuine)
    if mapping.extrapolated:
        logger.warning(
            "%d thresholds are above every sampled impostor score and were extrapolated; "
            "evaluate on more images for a better placement",
            mapping.extrapolated,
        )
    digest = hashlib.sha256(embedder_version.encode()).hexdigest()[:8]
    return Calibration(
        calibration_id=f"{base.calibration_id}+head-{digest}",
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        embedder_version=embedder_version,
        identification=identification,
        verification=verification,
        data={
            "method": METHOD,
            "margin_method": MARGIN_METHOD,
            "base_calibration": base.calibration_id,
            "base_embedder_version": base.embedder_version,
            "impostor_pairs": mapping.pairs,
            "extrapolated_thresholds": mapping.extrapolated,
            "identification_figures": "the base calibration's (impostor rates kept by construction)",
            **(data or {}),
        },
    )


def _map_verification(
    base: VerificationCalibration | None,
    mapping: QuantileMap,
    impostors: ImpostorScores,
    head_genuine: FloatArray | None,
) -> VerificationCalibration | None:
    if base is None:
        return None
    threshold = mapping.threshold(base.threshold)
    update: dict[str, float | int] = {
        "threshold": threshold,
        "far": float(np.mean(impostors.head >= threshold)),
        "impostor_pairs": impostors.head.size,
    }
    if head_genuine is not None and head_genuine.size:
        update |= {"tar": float(np.mean(head_genuine >= threshold)), "genuine_pairs": head_genuine.size}
    return base.model_copy(update=update)
