"""Age and gender training data: folders of faces named by the UTKFace convention, and their split.

UTKFace (Zhang, Song, Qi 2017) names each face ``age_gender_race_datetime.jpg``, and its
"aligned & cropped" faces add ``.chip.jpg``: ``26_1_0_20170116174525125.jpg.chip.jpg`` is a
26-year-old (``1`` = female, ``0`` = male), race 0-4, captured at that date and time. A few
UTKFace files lack a field (e.g. ``39_1_20170116174525125.jpg.chip.jpg``); such names, and
any other file, are skipped and counted, never guessed.

UTKFace has no identity labels, so the held-out split is by image: the same person may be on
both sides, which flatters the held-out figures a little; reports say so.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vigil.errors import DatasetError

logger = logging.getLogger(__name__)

MAX_AGE_YEARS = 120
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
HELD_OUT_FRACTION = 0.2
_UTKFACE_NAME = re.compile(
    r"^(?P<age>\d{1,3})_(?P<gender>[01])_(?P<race>[0-4])_(?P<datetime>\d{8,})"
    r"(?:\.jpe?g|\.png)(?:\.chip\.jpg)?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class FaceLabels:
    """The labels in one UTKFace file name.

    Attributes:
        age: Years, 0-120.
        female: UTKFace gender 1 (0 is male).
        race: UTKFace race code 0-4 (white, black, asian, indian, other); not used for training.
    """

    age: int
    female: bool
    race: int


@dataclass(frozen=True)
class AttributeDataset:
    """The labelled faces of a folder.

    Attributes:
        root: The folder.
        paths: Every image whose name follows the convention, sorted by name.
        ages: ``(N,)`` float32 years.
        female: ``(N,)`` bool.
        skipped: Files in the folder whose names do not follow the convention.
    """

    root: Path
    paths: list[Path]
    ages: npt.NDArray[np.float32]
    female: npt.NDArray[np.bool_]
    skipped: int


def parse_utkface_name(name: str) -> FaceLabels | None:
    """The labels of a UTKFace file name, or None when it does not follow the convention.

    Example:
        >>> parse_utkface_name("26_1_0_20170116174525125.jpg.chip.jpg")
        FaceLabels(age=26, female=True, race=0)
        >>> parse_utkface_name("39_1_20170116174525125.jpg.chip.jpg") is None  # no race field
        True
    """
    match = _UTKFACE_NAME.match(name)
    if match is None:
        return None
    age = int(match["age"])
    if age > MAX_AGE_YEARS:
        return None
    return FaceLabels(age=age, female=match["gender"] == "1", race=int(match["race"]))


def read_attribute_dataset(root: Path, limit: int | None = None, seed: int = 0) -> AttributeDataset:
    """The images of ``root`` named ``age_gender_race_datetime.jpg[.chip.jpg]`` (not recursive).

    Args:
        root: The folder.
        limit: Keep a random sample of ``limit`` labelled images (a quick run). A random
            sample, not the first by name: names start with the age, so those would all
            be of a few ages.
        seed: Seeds that sample.

    Raises:
        DatasetError: ``root`` is not a folder, or no file in it follows the convention.
    """
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} not found; pass --dataset with UTKFace-named images")
    files = sorted(path for path in root.iterdir() if path.is_file() and not path.name.startswith("."))
    labelled = [(path, parse_utkface_name(path.name)) for path in files]
    kept = [(path, labels) for path, labels in labelled if labels is not None]
    skipped = len(files) - len(kept)
    if skipped:
        logger.info("skipped %d files in %s whose names are not age_gender_race_datetime.jpg", skipped, root)
    if not kept:
        raise DatasetError(
            f"no image in {root} is named age_gender_race_datetime.jpg (UTKFace convention, "
            f"e.g. 26_1_0_20170116174525125.jpg.chip.jpg); {skipped} files skipped"
        )
    if limit is not None and limit < len(kept):
        chosen = np.sort(np.random.default_rng(seed).choice(len(kept), size=limit, replace=False))
        kept = [kept[index] for index in chosen]
    return AttributeDataset(
        root=root,
        paths=[path for path, _ in kept],
        ages=np.array([labels.age for _, labels in kept], dtype=np.float32),
        female=np.array([labels.female for _, labels in kept], dtype=np.bool_),
        skipped=skipped,
    )


def held_out_split(
    count: int, seed: int, fraction: float = HELD_OUT_FRACTION
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """A fixed-seed random split of ``count`` images into training and held-out indices.

    Args:
        count: Number of images.
        seed: Seeds the permutation; the same seed and count give the same split.
        fraction: Share held out (at least one image on each side).

    Returns:
        ``(train, held_out)`` sorted int64 indices.

    Raises:
        DatasetError: Fewer than 10 images, too few to hold any out meaningfully.
    """
    if count < 10:
        raise DatasetError(f"only {count} labelled images; training and evaluating needs at least 10")
    order = np.random.default_rng(seed).permutation(count)
    held_out_count = min(max(1, round(count * fraction)), count - 1)
    return np.sort(order[held_out_count:]).astype(np.int64), np.sort(order[:held_out_count]).astype(np.int64)
