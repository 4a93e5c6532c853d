"""Folder-per-person datasets (``PEOPLE_DIR/<name>/*.jpg|png``) and the pairs they give.

Genuine pairs are two photos of one person, impostor pairs two photos of different
people. Every pair is used up to a cap; beyond it, a seeded uniform random sample (without
repeats), so that a large dataset neither exhausts memory nor changes from run to run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vigil.errors import DatasetError
from vigil.typing import Embeddings, FloatArray

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
MAX_PAIRS = 2_000_000
"""Most genuine (and, separately, impostor) pairs scored: 2M pairs cost ~16 MB of scores and
demonstrate FARs down to 1.5e-6 (3 / 2M), below what face matching is operated at."""
_NAMES_SHOWN = 3
"""How many people a :class:`DatasetError` message names."""

IndexArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class PeopleDir:
    """A folder-per-person dataset.

    Attributes:
        root: The dataset folder.
        people: Each person's name (sub-folder) and photos, sorted by name and file name.
    """

    root: Path
    people: dict[str, list[Path]]

    @property
    def images(self) -> list[Path]:
        """Every photo, person by person."""
        return [image for images in self.people.values() for image in images]

    @property
    def single_image_people(self) -> list[str]:
        """People with one photo: they give impostor pairs only."""
        return [name for name, images in self.people.items() if len(images) == 1]

    @property
    def genuine_pair_count(self) -> int:
        """Genuine pairs there are (before the :data:`MAX_PAIRS` cap)."""
        return sum(len(images) * (len(images) - 1) // 2 for images in self.people.values())

    @property
    def impostor_pair_count(self) -> int:
        """Impostor pairs there are (before the :data:`MAX_PAIRS` cap)."""
        total = len(self.images)
        return total * (total - 1) // 2 - self.genuine_pair_count

    def labels(self) -> IndexArray:
        """``(N,)`` int64 person number of each photo of :attr:`images`."""
        return np.repeat(
            np.arange(len(self.people), dtype=np.int64), [len(images) for images in self.people.values()]
        )

    def keep(self, images: set[Path]) -> PeopleDir:
        """The dataset with only ``images`` (e.g. those with a detected face), checked again.

        Raises:
            DatasetError: What is left breaks a rule of :func:`read_people_dir`.
        """
        kept = {name: [image for image in photos if image in images] for name, photos in self.people.items()}
        return _checked(self.root, {name: photos for name, photos in kept.items() if photos}, faces_only=True)


@dataclass(frozen=True)
class PairIndices:
    """Which photos make up each pair: rows of :meth:`PeopleDir.images`.

    Attributes:
        genuine: ``(2, G)`` int64 photo indices of genuine pairs.
        impostor: ``(2, I)`` int64 photo indices of impostor pairs.
        sampled: Whether either kind is a random sample (more pairs than the cap).
    """

    genuine: IndexArray
    impostor: IndexArray
    sampled: bool


def read_people_dir(root: Path) -> PeopleDir:
    """Read a folder-per-person dataset and check it can give genuine and impostor pairs.

    Args:
        root: The folder holding one sub-folder of photos per person.

    Returns:
        The people and their photos.

    Raises:
        DatasetError: ``root`` is not a folder, a person folder holds no photo, there are
            fewer than two people, or nobody has two photos (the message names people).
    """
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder; pass --from-dir a folder with one sub-folder per person")
    people = {
        folder.name: sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
        for folder in sorted(path for path in root.iterdir() if path.is_dir())
    }
    empty = [name for name, images in people.items() if not images]
    if empty:
        raise DatasetError(
            f"{len(empty)} person folder(s) in {root} hold no .jpg/.png photo "
            f"({_names(empty)}); add photos or remove the folders"
        )
    dataset = _checked(root, people, faces_only=False)
    single = dataset.single_image_people
    if single:
        logger.warning(
            "%d person folder(s) in %s hold a single photo (%s): used for impostor pairs only",
            len(single),
            root,
            _names(single),
        )
    return dataset


def pair_indices(labels: IndexArray, max_pairs: int = MAX_PAIRS, seed: int = 0) -> PairIndices:
    """Every genuine and impostor pair of photos labelled ``labels``, or a sample beyond ``max_pairs``.

    Args:
        labels: ``(N,)`` int64 person of each photo, photos of one person adjacent.
        max_pairs: Cap on each kind of pair.
        seed: Seed of the sampling.

    Returns:
        Pairs ``(i, j)`` with ``i < j``, without repeats.
    """
    rng = np.random.default_rng(seed)
    _, starts, counts = np.unique(labels, return_index=True, return_counts=True)
    genuine_total = int(np.sum(counts * (counts - 1) // 2))
    impostor_total = len(labels) * (len(labels) - 1) // 2 - genuine_total
    if genuine_total <= max_pairs:
        genuine = np.concatenate(
            [np.zeros((2, 0), np.int64)]
            + [
                np.vstack(np.triu_indices(int(n), 1)) + start for start, n in zip(starts, counts, strict=True)
            ],
            axis=1,
        ).astype(np.int64)
    else:
        genuine = _sample_genuine(starts, counts, max_pairs, rng)
    if impostor_total <= max_pairs:
        first, second = np.triu_indices(len(labels), 1)
        different = labels[first] != labels[second]
        impostor = np.vstack([first[different], second[different]]).astype(np.int64)
    else:
        impostor = _sample_impostors(labels, max_pairs, rng)
    sampled = genuine_total > max_pairs or impostor_total > max_pairs
    if sampled:
        logger.info(
            "pairs: %d of %d genuine and %d of %d impostor (seeded sample)",
            genuine.shape[1],
            genuine_total,
            impostor.shape[1],
            impostor_total,
        )
    return PairIndices(genuine, impostor, sampled)


def cosine_scores(embeddings: Embeddings, pairs: IndexArray, chunk: int = 262_144) -> FloatArray:
    """Cosine similarity of each pair of rows.

    Args:
        embeddings: ``(N, D)`` float32 embeddings.
        pairs: ``(2, P)`` int64 row indices.
        chunk: Pairs scored at a time (bounds the memory of the gathered rows).

    Returns:
        ``(P,)`` float64 similarities.
    """
    unit = embeddings.astype(np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    scores = np.empty(pairs.shape[1], dtype=np.float64)
    for start in range(0, pairs.shape[1], chunk):
        first, second = pairs[0, start : start + chunk], pairs[1, start : start + chunk]
        scores[start : start + chunk] = np.einsum("ij,ij->i", unit[first], unit[second])
    return scores


def _checked(root: Path, people: dict[str, list[Path]], *, faces_only: bool) -> PeopleDir:
    """``PeopleDir(root, people)`` after the checks every dataset must pass."""
    context = f"{root} (once photos without a detected face are left out)" if faces_only else f"{root}"
    if len(people) < 2:
        raise DatasetError(
            f"{context} has {len(people)} person folder(s); impostor pairs need at least two people"
        )
    dataset = PeopleDir(root, people)
    single = dataset.single_image_people
    if len(single) == len(people):
        raise DatasetError(
            f"every person in {context} has a single photo ({_names(single)}), so there are no genuine "
            "pairs; add a second photo of at least some people"
        )
    return dataset


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_NAMES_SHOWN])
    return shown + (", ..." if len(names) > _NAMES_SHOWN else "")


def _sample_genuine(
    starts: IndexArray, counts: IndexArray, wanted: int, rng: np.random.Generator
) -> IndexArray:
    """``wanted`` distinct genuine pairs, uniform over all genuine pairs."""
    weights = (counts * (counts - 1) // 2).astype(np.float64)
    found = np.zeros(0, np.int64)
    total = int(starts[-1] + counts[-1])
    while found.size < wanted:
        person = rng.choice(len(counts), size=wanted, p=weights / weights.sum())
        first = rng.integers(0, counts[person])
        second = rng.integers(0, counts[person] - 1)
        second += second >= first  # two different photos of the person
        low, high = np.minimum(first, second), np.maximum(first, second)
        found = np.unique(np.concatenate([found, (starts[person] + low) * total + starts[person] + high]))
    return _decode(rng.permutation(found)[:wanted], total)


def _sample_impostors(labels: IndexArray, wanted: int, rng: np.random.Generator) -> IndexArray:
    """``wanted`` distinct impostor pairs, uniform over all impostor pairs."""
    total = len(labels)
    found = np.zeros(0, np.int64)
    while found.size < wanted:
        first = rng.integers(0, total, size=2 * wanted)
        second = rng.integers(0, total, size=2 * wanted)
        keep = labels[first] != labels[second]
        low, high = np.minimum(first, second)[keep], np.maximum(first, second)[keep]
        found = np.unique(np.concatenate([found, low * total + high]))
    return _decode(rng.permutation(found)[:wanted], total)


def _decode(codes: npt.NDArray[Any], total: int) -> IndexArray:
    """Pair codes ``i * total + j`` back to ``(2, P)`` indices."""
    return np.vstack([codes // total, codes % total]).astype(np.int64)
