"""Clustering unknown tracks: the same clusters as scipy's dense average linkage, in memory that
grows with the similar pairs only (``indexer/clustering.py``), on seeded synthetic embeddings.

The real-photo case (two unenrolled people → two clusters) is in ``tests/streamer/test_learning.py``.
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import numpy.typing as npt
import pytest
from scipy.cluster.hierarchy import fcluster, linkage

from indexer.clustering import cluster_tracks
from vigil.errors import GalleryError
from vigil.typing import Embeddings

DIM = 128  # the dlib embedder's dimension


def unit_rows(rows: npt.NDArray[np.float64]) -> Embeddings:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def make_people(seed: int, tracks: int, people: int, spread: float, dim: int = DIM) -> Embeddings:
    """``tracks`` unit vectors around ``people`` random centres, ``spread`` apart on average."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, dim))
    noise = rng.normal(size=(tracks, dim)) / np.sqrt(dim)
    return unit_rows(centres[rng.integers(0, people, tracks)] / np.sqrt(dim) + spread * noise)


def scipy_labels(means: Embeddings, threshold: float) -> npt.NDArray[np.int64]:
    """What clustering did before it was made sparse: a dense matrix for scipy's average linkage."""
    tree = linkage(means.astype(np.float64), method="average", metric="cosine")
    return np.asarray(fcluster(tree, t=1.0 - threshold, criterion="distance"), np.int64)


def same_partition(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> bool:
    return len(set(zip(a.tolist(), b.tolist(), strict=True))) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize(
    ("seed", "tracks", "people", "spread", "threshold"),
    [
        (1, 300, 12, 0.6, 0.6),  # 12 people well apart: 12 clusters
        (3, 400, 40, 0.7, 0.6),  # 40 people, some close: 47 clusters (single linkage chains them to 40)
        (3, 400, 40, 1.0, 0.5),  # noisy tracks: 136 clusters (single linkage: 57)
        (2, 300, 12, 2.0, 0.3),  # very noisy, a low threshold: 181 clusters (single linkage: 65)
        (4, 200, 3, 1.5, 0.1),  # most pairs are edges: 3 clusters (single linkage: 1)
        (5, 250, 25, 0.7, -0.1),  # a negative threshold: every pair is an edge, one cluster
    ],
)
def test_sparse_average_linkage_gives_scipys_clusters(
    seed: int, tracks: int, people: int, spread: float, threshold: float
) -> None:
    # given tracks of a few people, more or less apart
    means = make_people(seed, tracks, people, spread)
    # when clustered sparsely, then the partition is exactly scipy's dense average linkage
    labels = cluster_tracks(means, threshold)
    expected = scipy_labels(means, threshold)
    assert same_partition(labels, expected), (
        f"{len(set(labels.tolist()))} clusters, scipy {len(set(expected.tolist()))}"
    )
    # and labels count from 0, largest cluster first
    sizes = np.bincount(labels)
    assert sizes.tolist() == sorted(sizes.tolist(), reverse=True), sizes


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (0, []),  # nothing kept: no labels
        (1, [0]),  # one track is its own cluster
    ],
)
def test_too_few_tracks_to_compare(count: int, expected: list[int]) -> None:
    assert cluster_tracks(make_people(0, 2, 1, 0.1)[:count], 0.9).tolist() == expected


@pytest.mark.parametrize(
    ("max_pairs", "expected"),
    [
        (45, None),  # one person's 10 tracks: exactly 45 similar pairs, allowed
        (44, GalleryError),  # one pair too many: refused, with what to do
    ],
)
def test_the_similar_pairs_cap_refuses_with_what_to_do(
    max_pairs: int, expected: type[Exception] | None
) -> None:
    means = make_people(6, 10, 1, 0.05)
    if expected is None:
        assert cluster_tracks(means, 0.9, max_pairs=max_pairs).tolist() == [0] * 10
        return
    with pytest.raises(expected, match=r"over 44 pairs of the 10 unknown tracks .*cluster_threshold"):
        cluster_tracks(means, 0.9, max_pairs=max_pairs)


@pytest.mark.slow
def test_a_busy_camera_clusters_in_memory_far_below_a_full_matrix() -> None:
    # given 20,000 tracks: 19,000 strangers seen once (random directions, no two within
    # similarity 0.6 of each other in 128-d) and 100 planted people seen 10 times each
    rng = np.random.default_rng(7)
    strangers, planted, visits = 19_000, 100, 10
    centres = unit_rows(rng.normal(size=(planted, DIM)))
    noise = unit_rows(rng.normal(size=(planted * visits, DIM)))
    people = unit_rows(np.repeat(centres, visits, axis=0) + 0.25 * noise)  # ~0.94 to their centre
    means = np.concatenate([unit_rows(rng.normal(size=(strangers, DIM))), people])
    order = rng.permutation(len(means))
    means = means[order]
    person = np.concatenate([np.full(strangers, -1), np.repeat(np.arange(planted), visits)])[order]
    # when clustered at 0.9, memory traced
    tracemalloc.start()
    started = time.perf_counter()
    try:
        labels = cluster_tracks(means, 0.9)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    seconds = time.perf_counter() - started
    # then every planted person is exactly one cluster, and every stranger is alone
    for who in range(planted):
        theirs = set(labels[person == who].tolist())
        assert len(theirs) == 1, f"planted person {who} split into {theirs}"
        assert np.sum(labels == theirs.pop()) == visits, f"planted person {who} absorbed a stranger"
    assert len(set(labels[person == -1].tolist())) == strangers, "strangers were joined"
    # and the peak is a few blocks, far below the 1.6 GB of a 20,000² float32 matrix
    full_matrix_bytes = len(means) ** 2 * 4
    assert peak_bytes < full_matrix_bytes / 20, f"peak {peak_bytes / 1e6:.0f} MB in {seconds:.1f} s"


@pytest.mark.slow
def test_memory_per_similar_pair_stays_under_what_the_cap_assumes() -> None:
    # given 1,500 tracks of one person: every one of the 1,124,250 pairs is similar
    means = make_people(8, 1500, 1, 0.3)
    pairs = 1500 * 1499 // 2
    # when clustered, memory traced
    tracemalloc.start()
    try:
        labels = cluster_tracks(means, 0.5)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # then they are one person, in under 80 bytes a pair (MAX_SIMILAR_PAIRS assumes it)
    assert set(labels.tolist()) == {0}
    assert peak_bytes / pairs < 80, f"{peak_bytes / pairs:.1f} bytes per similar pair"
