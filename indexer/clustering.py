"""Grouping unknown tracks into people: average-linkage clustering on cosine similarity.

Each unknown track is one node, represented by the unit mean of its kept embeddings (a
track is one person, so its faces need no clustering of their own). Average linkage joins
the two groups whose tracks are, on average, most alike, and stops when no two groups
reach ``threshold``; unlike single linkage it does not chain two people together through
one ambiguous track, and unlike Chinese whispers it is deterministic.

Memory grows with the number of *similar* pairs, not with every pair (a full similarity
matrix of 50,000 tracks would take 10 GB), because two facts make exact average linkage
sparse:

- for unit vectors, the average similarity of two groups is the dot product of their
  (unnormalised) means, so a group's sum and size are all a merge needs;
- an average reaches ``threshold`` only if one pair does, so only groups joined by a pair
  of tracks at or above ``threshold`` can ever be merged; the others need no similarity.

So the pairs at or above ``threshold`` are found block by block (``_similar_pairs``) and
kept as an edge list; then every round merges each pair of groups that are each other's
most similar neighbour (reciprocal nearest neighbours). Average linkage is *reducible* (a
merged group is never more similar to a third than the closer of its parts), so merging
every reciprocal pair at once gives the same clusters as merging the single best pair at a
time, which is what ``scipy.cluster.hierarchy.linkage(method="average")`` does (as in
Sumengen et al., "Scaling hierarchical agglomerative clustering to billion-sized datasets",
2023).
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

from vigil.errors import GalleryError
from vigil.typing import Embeddings

logger = logging.getLogger(__name__)

# Similarities computed at once while looking for similar pairs: 1M float32 = 4 MB (and, when
# all are similar, 40 MB of their indices).
SIMILARITY_BLOCK_FLOATS = 1024 * 1024
# Similar pairs clustering will hold. Each costs under 80 bytes at peak (ids, weights and the
# de-duplication after a merge round; tests/indexer/test_clustering.py measures 67), so this
# cap is under 800 MB. Real faces reach it when 4,500 tracks are one person, or when the
# threshold is so low that strangers pass it (1 % of the pairs of 45,000 strangers' tracks).
MAX_SIMILAR_PAIRS = 10_000_000
# Edges whose group similarity is recomputed at once after a merge round: 8K × 2 × D float64
# (16 MB for 128-d embeddings).
_REWEIGH_CHUNK = 8192


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


def cluster_tracks(
    means: Embeddings, threshold: float, max_pairs: int = MAX_SIMILAR_PAIRS
) -> npt.NDArray[np.int64]:
    """Cluster labels (0, 1, ...; the largest cluster first) for tracks by average linkage.

    Memory is the tracks (twice, as float64 sums), a 4 MB block of similarities, and under
    80 bytes per pair of tracks at or above ``threshold`` (see the module docstring).

    Args:
        means: ``(N, D)`` unit-length float32, from :func:`track_means`.
        threshold: Average cosine similarity (higher = stricter) two groups need to be joined.
        max_pairs: Refuse to cluster when more pairs of tracks than this reach ``threshold``.

    Returns:
        ``(N,)`` int64 labels.

    Raises:
        GalleryError: More than ``max_pairs`` similar pairs (checked before they are all held).

    Example:
        >>> cluster_tracks(np.array([[1, 0], [0.99, 0.14], [0, 1]], np.float32), 0.9)
        array([0, 0, 1])
    """
    count = len(means)
    if count < 2:
        return np.zeros(count, np.int64)
    return _rank_by_size(_merge_reciprocal_neighbours(means, threshold, max_pairs))


# -- private ----------------------------------------------------------------------------------


def _similar_pairs(
    means: npt.NDArray[np.float32], threshold: float, max_pairs: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.float64]]:
    """Every pair ``i < j`` with similarity ≥ ``threshold``: ``(i, j, similarity)``, one block at a time."""
    count = len(means)
    rows = max(1, SIMILARITY_BLOCK_FLOATS // count)
    firsts, seconds, weights = [], [], []
    found = 0
    for start in range(0, count, rows):
        stop = min(start + rows, count)
        # Only the upper triangle: each block against itself and the tracks after it.
        block = means[start:stop] @ means[start:].T
        row, column = np.nonzero(block >= np.float32(threshold))
        above = column > row  # column index is relative to ``start``, like row: j > i
        row, column = row[above], column[above]
        found += len(row)
        if found > max_pairs:
            raise GalleryError(
                f"over {max_pairs:,} pairs of the {count:,} unknown tracks are at similarity "
                f"{threshold:.4f} or more: too many to cluster; raise indexer.unknowns.cluster_threshold, "
                "lower indexer.unknowns.retention_s, or `vigil unknowns forget --all`"
            )
        weights.append(block[row, column].astype(np.float64))
        firsts.append((row + start).astype(np.int32))
        seconds.append((column + start).astype(np.int32))
    logger.debug("%d of %d tracks' pairs reach similarity %.4f", found, count * (count - 1) // 2, threshold)
    return np.concatenate(firsts), np.concatenate(seconds), np.concatenate(weights)


def _merge_reciprocal_neighbours(
    means: Embeddings, threshold: float, max_pairs: int
) -> npt.NDArray[np.int32]:
    """Average linkage down to ``threshold`` on the similar pairs; each track's group (its lowest track).

    Groups are named by their lowest track and hold a sum of unit means and a size; an
    edge joins two groups whose average similarity (``weight``) is at least ``threshold``.
    The edges are made here, so that each round's replace the last's (nothing else holds them).
    """
    count = len(means)
    first, second, weight = _similar_pairs(means.astype(np.float32), threshold, max_pairs)
    sums = means.astype(np.float64)
    sizes = np.ones(count, np.int64)
    owner = np.arange(count, dtype=np.int32)
    while len(first):
        # Every group's most similar neighbour; ties go to the lowest neighbour, so the
        # best edge of the lowest group on a tied best edge is always reciprocal.
        ends = np.concatenate([first, second])
        others = np.concatenate([second, first])
        both = np.concatenate([weight, weight])
        top = np.full(count, -np.inf)
        np.maximum.at(top, ends, both)
        tied = both == top[ends]
        del both
        best = np.full(count, count, np.int32)  # ``count``: no neighbour
        np.minimum.at(best, ends[tied], others[tied])
        del ends, others, tied
        groups = np.flatnonzero(best < count).astype(np.int32)
        keep = groups[(best[best[groups]] == groups) & (groups < best[groups])]
        gone = best[keep]
        sums[keep] += sums[gone]
        sizes[keep] += sizes[gone]
        rename = np.arange(count, dtype=np.int32)
        rename[gone] = keep
        owner = rename[owner]
        first, second, weight = _reweigh(rename[first], rename[second], weight, keep, sums, sizes, threshold)
    return owner


def _reweigh(
    first: npt.NDArray[np.int32],
    second: npt.NDArray[np.int32],
    weight: npt.NDArray[np.float64],
    merged: npt.NDArray[np.int32],
    sums: npt.NDArray[np.float64],
    sizes: npt.NDArray[np.int64],
    threshold: float,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.float64]]:
    """The edges after a round: one per pair of groups, new groups' similarities recomputed, weak ones gone.

    Only edges of a new group change (they may now repeat, or join its two halves); their
    similarity is the dot product of the groups' means, and one that falls below
    ``threshold`` can never rise above it again (reducibility), so it is dropped.
    """
    count = len(sums)
    is_new = np.zeros(count, bool)
    is_new[merged] = True
    touched = is_new[first] | is_new[second]
    key = np.minimum(first[touched], second[touched]).astype(np.int64) * count
    key += np.maximum(first[touched], second[touched])
    key = np.unique(key)
    low, high = (key // count).astype(np.int32), (key % count).astype(np.int32)
    del key
    between = low != high
    low, high = low[between], high[between]
    new_weight = np.empty(len(low))
    for start in range(0, len(low), _REWEIGH_CHUNK):
        chunk = slice(start, start + _REWEIGH_CHUNK)
        dots = np.einsum("ij,ij->i", sums[low[chunk]], sums[high[chunk]])
        new_weight[chunk] = dots / (sizes[low[chunk]] * sizes[high[chunk]])
    strong = new_weight >= threshold
    kept = ~touched
    return (
        np.concatenate([first[kept], low[strong]]),
        np.concatenate([second[kept], high[strong]]),
        np.concatenate([weight[kept], new_weight[strong]]),
    )


def _rank_by_size(owner: npt.NDArray[np.int32]) -> npt.NDArray[np.int64]:
    """Labels 0, 1, ... by group size, largest first, ties by first appearance (stable for an input)."""
    _, first_seen, inverse, sizes = np.unique(
        owner, return_index=True, return_inverse=True, return_counts=True
    )
    rank = np.empty(len(sizes), np.int64)
    rank[np.lexsort((first_seen, -sizes))] = np.arange(len(sizes))
    return rank[inverse.reshape(-1)]
