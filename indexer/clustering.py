"""Grouping unknown tracks into people: average-linkage clustering on cosine similarity.

Each unknown track is one node, represented by the unit mean of its kept embeddings (a
track is one person, so its faces need no clustering of their own). Average linkage joins
the two groups whose tracks are, on average, most alike, and stops when no two groups
reach ``threshold``; unlike single linkage it does not chain two people together through
one ambiguous track, and unlike Chinese whispers it is deterministic. Memory is one
float64 per pair of tracks (10,000 tracks: 400 MB), which bounds how many unknown tracks a
retention period should hold.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.cluster.hierarchy import fcluster, linkage

from vigil.typing import Embeddings


def track_means(embeddings: list[Embeddings]) -> Embeddings:
    """One unit-length row per track: the mean of its unit-length embeddings.

    Args:
        embeddings: Per track, ``(K, D)`` float32 with K ≥ 1.

    Returns:
        ``(N, D)`` float32.
    """
    rows = []
    for faces in embeddings:
        units = faces / np.maximum(np.linalg.norm(faces, axis=1, keepdims=True), 1e-12)
        mean = units.mean(axis=0)
        rows.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
    return np.stack(rows).astype(np.float32)


def cluster_tracks(means: Embeddings, threshold: float) -> npt.NDArray[np.int64]:
    """Cluster labels (0, 1, ...; the largest cluster first) for tracks by average linkage.

    Args:
        means: ``(N, D)`` unit-length float32, from :func:`track_means`.
        threshold: Average cosine similarity (higher = stricter) two groups need to be joined.

    Returns:
        ``(N,)`` int64 labels.

    Example:
        >>> cluster_tracks(np.array([[1, 0], [0.99, 0.14], [0, 1]], np.float32), 0.9)
        array([0, 0, 1])
    """
    count = len(means)
    if count == 0:
        return np.zeros(0, np.int64)
    if count == 1:
        return np.zeros(1, np.int64)
    tree = linkage(means.astype(np.float64), method="average", metric="cosine")
    # Cosine distance is 1 − similarity; fcluster keeps groups joined at distance ≤ t.
    raw = fcluster(tree, t=1.0 - threshold, criterion="distance")
    labels, sizes = np.unique(raw, return_counts=True)
    # Largest first, ties by first appearance, so labels are stable for a given input.
    first = {label: int(np.argmax(raw == label)) for label in labels}
    order = sorted(labels, key=lambda label: (-sizes[list(labels).index(label)], first[label]))
    renumber = {label: rank for rank, label in enumerate(order)}
    return np.array([renumber[label] for label in raw], np.int64)
