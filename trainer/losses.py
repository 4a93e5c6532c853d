"""Metric-learning losses for embedding heads, and the P people × K images batch sampler.

Every loss takes a batch of L2-normalised embeddings ``(B, D)`` and the person label of
each row ``(B,)``, as drawn by :class:`PKBatchSampler`: ``P`` people with ``K`` images each,
so every batch holds both genuine (same-person) and impostor pairs.

- ``contrastive`` (Hadsell, Chopra & LeCun 2006) on every pair of the batch: genuine pairs
  are pulled together (``d²``), impostor pairs pushed beyond a margin (``max(0, m − d)²``),
  with ``d`` the Euclidean distance between unit vectors (``d² = 2 − 2·cos``).
- ``siamese``: binary cross-entropy on every pair's cosine similarity through
  ``sigmoid(scale · cos + bias)`` (the Siamese verification head of Taigman et al. 2014,
  reduced to one similarity), scale and bias learnable or fixed.
- ``triplet`` with batch-hard mining (Hermans, Beyer & Leibe 2017): for every anchor, its
  farthest positive and nearest negative in the batch, ``max(0, d_ap − d_an + m)``.

Genuine pairs are far fewer than impostor pairs in a batch (P·K(K−1)/2 against
K²·P(P−1)/2), so the pair losses average each class on its own and add the two means.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any, get_args

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from vigil.typing import HeadLoss

logger = logging.getLogger(__name__)

LOSS_NAMES: tuple[HeadLoss, ...] = get_args(HeadLoss)
CONTRASTIVE_MARGIN = 0.7
"""Impostor distance margin of the contrastive loss (cosine 0.755). In the dlib backbone's
space LFW impostor pairs are 0.57 ± 0.06 apart and genuine pairs 0.29, so at first nearly
every impostor pair is inside the margin and pushed out."""
TRIPLET_MARGIN = 0.1
"""Distance margin of the triplet loss. Mean genuine and impostor distances are 0.29 and 0.57
in the dlib backbone's space on LFW, but a batch's hardest positive and negative are close:
with 0.1, the initial loss is about 0.01 and comes from the hard cases alone."""
SIAMESE_SCALE = 10.0
"""Initial logit scale of the Siamese loss: a cosine step of 0.1 changes the odds e-fold."""

LabelArray = npt.NDArray[np.integer[Any]]


class PKBatchSampler:
    """Batches of ``people_per_batch`` (P) people × ``images_per_person`` (K) images.

    People are drawn uniformly (not by image count, so a few people with hundreds of images
    do not dominate) without replacement within a batch; each person's images without
    replacement when they have at least K, else with replacement. One epoch holds
    ``ceil(images / (P·K))`` batches, so it shows about as many rows as there are images.

    Args:
        labels: ``(N,)`` integer person label of each image.
        people_per_batch: P, at least 2 (a batch needs impostors).
        images_per_person: K, at least 2 (a batch needs genuine pairs).
        seed: Seed of the sampler's own random generator.

    Raises:
        ValueError: P or K below 2, or fewer than 2 people with 2 or more images.

    Example:
        >>> sampler = PKBatchSampler(np.array([0, 0, 1, 1, 2, 2]), 2, 2, seed=0)
        >>> [len(batch) for batch in sampler]
        [4, 4]
    """

    def __init__(self, labels: LabelArray, people_per_batch: int, images_per_person: int, seed: int) -> None:
        if people_per_batch < 2 or images_per_person < 2:
            raise ValueError(
                f"a batch needs at least 2 people x 2 images, got {people_per_batch} x {images_per_person}"
            )
        label_array = np.asarray(labels)
        self._rows_by_person = [np.flatnonzero(label_array == person) for person in np.unique(label_array)]
        self._rows_by_person = [rows for rows in self._rows_by_person if rows.size >= 2]
        if len(self._rows_by_person) < 2:
            raise ValueError("need at least 2 people with 2 or more images each")
        self.people_per_batch = min(people_per_batch, len(self._rows_by_person))
        self.images_per_person = images_per_person
        self._images = int(sum(rows.size for rows in self._rows_by_person))
        self._random = np.random.default_rng(seed)

    def __len__(self) -> int:
        """Batches per epoch."""
        return math.ceil(self._images / (self.people_per_batch * self.images_per_person))

    def __iter__(self) -> Iterator[npt.NDArray[np.int64]]:
        """One epoch of batches: ``(P·K,)`` row indices each, K consecutive rows per person."""
        for _ in range(len(self)):
            people = self._random.choice(len(self._rows_by_person), self.people_per_batch, replace=False)
            batch = [
                self._random.choice(
                    self._rows_by_person[person],
                    self.images_per_person,
                    replace=self._rows_by_person[person].size < self.images_per_person,
                )
                for person in people
            ]
            yield np.concatenate(batch).astype(np.int64)


def contrastive_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Contrastive loss over every pair of the batch (class-balanced).

    Args:
        embeddings: ``(B, D)`` L2-normalised.
        labels: ``(B,)`` integer person labels.
        margin: Distance beyond which impostor pairs cost nothing (unit vectors are 0 to 2 apart).

    Returns:
        The scalar loss: mean genuine ``d²`` + mean impostor ``max(0, margin − d)²``.

    Raises:
        ValueError: The batch has no genuine or no impostor pair.
    """
    genuine, impostor = _pair_masks(labels)
    distance = _distances(embeddings)
    return (distance[genuine] ** 2).mean() + (torch.relu(margin - distance[impostor]) ** 2).mean()


def siamese_bce_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """Binary cross-entropy of "same person" on every pair's cosine similarity (class-balanced).

    Args:
        embeddings: ``(B, D)`` L2-normalised.
        labels: ``(B,)`` integer person labels.
        scale: Scalar logit scale.
        bias: Scalar logit bias: pairs are called the same above ``cos = −bias / scale``.

    Returns:
        The scalar loss: mean BCE over genuine pairs + mean BCE over impostor pairs.

    Raises:
        ValueError: The batch has no genuine or no impostor pair.
    """
    genuine, impostor = _pair_masks(labels)
    logits = scale * (embeddings @ embeddings.T) + bias
    bce = nn.functional.binary_cross_entropy_with_logits
    return bce(logits[genuine], torch.ones_like(logits[genuine])) + bce(
        logits[impostor], torch.zeros_like(logits[impostor])
    )


def batch_hard_triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Triplet loss with the hardest positive and negative of each anchor in the batch.

    Args:
        embeddings: ``(B, D)`` L2-normalised.
        labels: ``(B,)`` integer person labels.
        margin: Required gap between the negative and the positive distance.

    Returns:
        The scalar loss: mean over anchors with a positive of
        ``max(0, max d(anchor, positive) − min d(anchor, negative) + margin)``.

    Raises:
        ValueError: The batch has no genuine or no impostor pair.
    """
    genuine, impostor = _pair_masks(labels, upper_only=False)
    distance = _distances(embeddings)
    hardest_positive = torch.where(genuine, distance, torch.zeros_like(distance)).amax(dim=1)
    hardest_negative = torch.where(impostor, distance, torch.full_like(distance, math.inf)).amin(dim=1)
    anchors = genuine.any(dim=1) & impostor.any(dim=1)
    return torch.relu(hardest_positive - hardest_negative + margin)[anchors].mean()


class ContrastiveLoss(nn.Module):
    """:func:`contrastive_loss` as a module (no parameters)."""

    def __init__(self, margin: float = CONTRASTIVE_MARGIN) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return contrastive_loss(embeddings, labels, self.margin)


class SiameseBCELoss(nn.Module):
    """:func:`siamese_bce_loss` with its scale and bias as parameters (trained with the head
    unless ``learnable`` is off).

    Args:
        threshold: Cosine at which the initial logit is 0: start it where the backbone
            separates same from different (e.g. its best verification threshold), so the
            first steps train the head rather than the bias.
        scale: Initial logit scale.
        learnable: Whether the optimiser may change scale and bias.
    """

    def __init__(
        self, threshold: float = 0.9, scale: float = SIAMESE_SCALE, *, learnable: bool = True
    ) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale), requires_grad=learnable)
        self.bias = nn.Parameter(torch.tensor(-scale * threshold), requires_grad=learnable)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return siamese_bce_loss(embeddings, labels, self.scale, self.bias)


class BatchHardTripletLoss(nn.Module):
    """:func:`batch_hard_triplet_loss` as a module (no parameters)."""

    def __init__(self, margin: float = TRIPLET_MARGIN) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return batch_hard_triplet_loss(embeddings, labels, self.margin)


def make_loss(name: HeadLoss, *, threshold: float = 0.9) -> nn.Module:
    """The loss module called ``name``, with the default margins.

    Args:
        name: ``contrastive``, ``siamese`` or ``triplet``.
        threshold: Where the Siamese loss's decision starts (see :class:`SiameseBCELoss`).

    Raises:
        ValueError: An unknown name.
    """
    if name == "contrastive":
        return ContrastiveLoss()
    if name == "siamese":
        return SiameseBCELoss(threshold)
    if name == "triplet":
        return BatchHardTripletLoss()
    raise ValueError(f"unknown loss {name!r}; use one of {', '.join(LOSS_NAMES)}")


def _pair_masks(labels: torch.Tensor, *, upper_only: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, B)`` genuine and impostor masks (each unordered pair once when ``upper_only``)."""
    same = labels[:, None] == labels[None, :]
    keep = torch.ones_like(same)
    keep = torch.triu(keep, diagonal=1) if upper_only else keep & ~torch.eye(len(labels), dtype=torch.bool)
    genuine, impostor = same & keep, ~same & keep
    if not genuine.any() or not impostor.any():
        raise ValueError(
            "a batch needs both same-person and different-person pairs; draw it with PKBatchSampler"
        )
    return genuine, impostor


def _distances(embeddings: torch.Tensor) -> torch.Tensor:
    """``(B, B)`` Euclidean distances between unit vectors, from their cosines.

    ``sqrt(2 − 2·cos)`` with a floor: the gradient of ``sqrt`` at 0 (the diagonal, duplicate
    rows) is infinite.
    """
    cosine = embeddings @ embeddings.T
    return torch.sqrt(torch.clamp(2.0 - 2.0 * cosine, min=1e-12))
