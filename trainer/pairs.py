"""Verification pair lists: the LFW ``pairs.txt`` format and a plain one-pair-per-line format.

Two formats are read:

- LFW View 2 (``pairs.txt``): a header ``<folds> <pairs_per_class>`` (e.g. ``10 300``), then
  for each fold ``pairs_per_class`` matched lines ``name i j`` followed by
  ``pairs_per_class`` mismatched lines ``name1 i name2 j``. Image ``i`` of ``name`` is
  ``<images_dir>/<name>/<name>_<i:04d>.jpg``. The View 1 files (``pairsDevTrain.txt``,
  ``pairsDevTest.txt``) have a one-number header ``<pairs_per_class>`` and are read as a
  single fold.
- Plain: one pair per line, ``path_a path_b same [fold]``, paths relative to
  ``images_dir``, ``same`` is ``1`` or ``0``. When no line gives a fold, pairs are dealt
  round-robin into ``folds`` folds (:data:`DEFAULT_FOLDS` unless the caller says otherwise).
  Blank lines and ``#`` comments are ignored.

Folds are numbered from 0. Every reader checks that each image exists and raises
:class:`~vigil.errors.DatasetError` with a one-line message otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vigil.errors import DatasetError

logger = logging.getLogger(__name__)

DEFAULT_FOLDS = 10
"""Folds used for plain pair files that give none (the LFW protocol's count)."""

_MISSING_SHOWN = 3
"""How many missing image paths a :class:`DatasetError` message names."""


@dataclass(frozen=True)
class Pair:
    """One verification pair.

    Attributes:
        path_a: First image.
        path_b: Second image.
        same: True when both images show the same person.
        fold: Cross-validation fold, from 0.
    """

    path_a: Path
    path_b: Path
    same: bool
    fold: int


def read_pairs(
    pairs_file: Path, images_dir: Path, *, check_images: bool = True, folds: int = DEFAULT_FOLDS
) -> list[Pair]:
    """Read a pair list, detecting whether it is in LFW or plain format.

    A file whose first non-blank, non-comment line is one or two integers is read as LFW
    (:func:`read_lfw_pairs`); anything else as plain (:func:`read_plain_pairs`).

    Args:
        pairs_file: The pair list.
        images_dir: Directory the image paths are relative to.
        check_images: Whether to check that every image file exists.
        folds: Folds to deal a plain file's pairs into when it gives none (LFW files give theirs).

    Returns:
        The pairs in file order.

    Raises:
        DatasetError: The file is missing, empty or malformed, or images are missing.
    """
    content = content_lines(read_list_lines(pairs_file))
    if not content:
        raise DatasetError(f"{pairs_file} is empty; point to a pairs file with at least one pair")
    first_fields = content[0][1].split()
    if len(first_fields) <= 2 and all(_is_int(field) for field in first_fields):
        return read_lfw_pairs(pairs_file, images_dir, check_images=check_images)
    return read_plain_pairs(pairs_file, images_dir, check_images=check_images, folds=folds)


def read_lfw_pairs(pairs_file: Path, images_dir: Path, *, check_images: bool = True) -> list[Pair]:
    """Read an LFW ``pairs.txt`` (View 2, or a one-fold View 1 file).

    Args:
        pairs_file: The ``pairs.txt`` file.
        images_dir: The extracted image folder (e.g. ``lfw-deepfunneled``) holding one
            sub-folder per person.
        check_images: Whether to check that every image file exists.

    Returns:
        ``folds * 2 * pairs_per_class`` pairs in file order, fold numbers from 0.

    Raises:
        DatasetError: The file is missing, its header or a line is malformed (the message
            gives the line number and the expected form), the pair count does not match
            the header, or images are missing.

    Example:
        >>> pairs = read_lfw_pairs(Path("lfw/pairs.txt"), Path("lfw/lfw-deepfunneled"))
        >>> len(pairs), pairs[0].fold  # doctest: +SKIP
        (6000, 0)
    """
    lines = read_list_lines(pairs_file)
    content = content_lines(lines)
    if not content:
        raise DatasetError(f"{pairs_file} is empty; expected an LFW header like '10 300' on line 1")
    header_number, header = content[0]
    folds, per_class = _parse_lfw_header(pairs_file, header_number, header)
    body = content[1:]
    expected = folds * 2 * per_class
    if len(body) != expected:
        raise DatasetError(
            f"{pairs_file} has {len(body)} pair lines but its header '{header.strip()}' "
            f"means {folds} folds x 2 x {per_class} = {expected}; re-download pairs.txt or fix the header"
        )
    pairs = [
        _parse_lfw_line(pairs_file, images_dir, line_number, line, index, folds, per_class)
        for index, (line_number, line) in enumerate(body)
    ]
    if check_images:
        check_images_exist(pairs_file, images_dir, _pair_paths(pairs))
    logger.info("read %d LFW pairs in %d folds from %s", len(pairs), folds, pairs_file)
    return pairs


def read_plain_pairs(
    pairs_file: Path, images_dir: Path, *, check_images: bool = True, folds: int = DEFAULT_FOLDS
) -> list[Pair]:
    """Read a plain pair list of ``path_a path_b same [fold]`` lines.

    Args:
        pairs_file: The pair list. Blank lines and lines starting with ``#`` are skipped.
        images_dir: Directory the image paths are relative to.
        check_images: Whether to check that every image file exists.
        folds: How many folds to deal the pairs into when no line gives one.

    Returns:
        The pairs in file order. Without fold columns, pair ``k`` goes to fold
        ``k % folds`` (round-robin keeps both classes in every fold of a file that lists
        its matched pairs before its mismatched ones).

    Raises:
        DatasetError: The file is missing or empty, a line is malformed (the message gives
            the line number and the expected form), only some lines give a fold, or images
            are missing.
    """
    lines = read_list_lines(pairs_file)
    parsed: list[tuple[Path, Path, bool, int | None]] = [
        _parse_plain_line(pairs_file, images_dir, line_number, line)
        for line_number, line in content_lines(lines)
    ]
    if not parsed:
        raise DatasetError(f"{pairs_file} has no pairs; add lines of the form 'path_a path_b same [fold]'")
    with_fold = sum(fold is not None for *_, fold in parsed)
    if 0 < with_fold < len(parsed):
        raise DatasetError(
            f"{pairs_file}: {with_fold} of {len(parsed)} lines give a fold; "
            "give a fold on every line or on none"
        )
    pairs = [
        Pair(path_a, path_b, same, index % folds if fold is None else fold)
        for index, (path_a, path_b, same, fold) in enumerate(parsed)
    ]
    if check_images:
        check_images_exist(pairs_file, images_dir, _pair_paths(pairs))
    logger.info("read %d plain pairs from %s", len(pairs), pairs_file)
    return pairs


def read_list_lines(list_file: Path, kind: str = "pairs file") -> list[str]:
    """Read a list file (pairs, probes) into lines, mapping I/O failures to :class:`DatasetError`.

    Args:
        list_file: The text file.
        kind: What the file is, for the messages (e.g. ``"probe list"``).
    """
    if not list_file.is_file():
        raise DatasetError(f"{kind} {list_file} not found; check the path or download the benchmark")
    try:
        return list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(
            f"cannot read {kind} {list_file} ({error}); check it is a UTF-8 text file"
        ) from error


def content_lines(lines: list[str]) -> list[tuple[int, str]]:
    """Non-blank, non-comment (``#``) lines with their 1-based line numbers."""
    return [
        (number, line)
        for number, line in enumerate(lines, start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def check_images_exist(list_file: Path, images_dir: Path, paths: Sequence[Path]) -> None:
    """Raise :class:`DatasetError` naming the first few of ``paths`` (from ``list_file``) that are missing."""
    if not images_dir.is_dir():
        raise DatasetError(
            f"image folder {images_dir} for {list_file} not found; "
            "point images_dir at the extracted image folder"
        )
    unique_paths = list(dict.fromkeys(paths))
    missing = [path for path in unique_paths if not path.is_file()]
    if missing:
        shown = ", ".join(str(path) for path in missing[:_MISSING_SHOWN])
        more = ", ..." if len(missing) > _MISSING_SHOWN else ""
        raise DatasetError(
            f"{len(missing)} of {len(unique_paths)} images listed in {list_file} are missing "
            f"(first: {shown}{more}); check that images_dir points at the extracted image folder"
        )


def _pair_paths(pairs: list[Pair]) -> list[Path]:
    """Both images of every pair, in order."""
    return [path for pair in pairs for path in (pair.path_a, pair.path_b)]


def _is_int(text: str) -> bool:
    """Whether ``text`` is a base-10 integer (optionally signed)."""
    try:
        int(text)
    except ValueError:
        return False
    return True


def _parse_lfw_header(pairs_file: Path, line_number: int, line: str) -> tuple[int, int]:
    """Parse ``<folds> <pairs_per_class>`` or ``<pairs_per_class>`` into (folds, per_class)."""
    fields = line.split()
    if len(fields) in (1, 2) and all(_is_int(field) for field in fields):
        numbers = [int(field) for field in fields]
        folds, per_class = (1, numbers[0]) if len(numbers) == 1 else (numbers[0], numbers[1])
        if folds > 0 and per_class > 0:
            return folds, per_class
    raise DatasetError(
        f"{pairs_file} line {line_number}: expected the header '<folds> <pairs_per_class>' "
        f"with positive integers (e.g. '10 300'), got {line.strip()!r}; fix the header"
    )


def _parse_lfw_line(
    pairs_file: Path, images_dir: Path, line_number: int, line: str, index: int, folds: int, per_class: int
) -> Pair:
    """Parse pair line ``index`` (0-based, after the header) of an LFW file."""
    fold, position = divmod(index, 2 * per_class)
    same = position < per_class
    fields = line.split()
    expected = "'name i j' (matched pair)" if same else "'name1 i name2 j' (mismatched pair)"
    where = (
        f"{pairs_file} line {line_number} "
        f"(fold {fold + 1} of {folds}, pair {position + 1} of {2 * per_class})"
    )
    if len(fields) != (3 if same else 4):
        raise DatasetError(
            f"{where}: expected {expected}, got {len(fields)} fields {line.strip()!r}; "
            "each fold lists its matched pairs before its mismatched ones"
        )
    if same:
        name_a, index_a, index_b = fields
        name_b = name_a
    else:
        name_a, index_a, name_b, index_b = fields
    if not (_is_positive_int(index_a) and _is_positive_int(index_b)):
        raise DatasetError(f"{where}: expected {expected} with positive image numbers, got {line.strip()!r}")
    return Pair(
        path_a=_lfw_image_path(images_dir, name_a, int(index_a)),
        path_b=_lfw_image_path(images_dir, name_b, int(index_b)),
        same=same,
        fold=fold,
    )


def _is_positive_int(text: str) -> bool:
    """Whether ``text`` is an integer of at least 1."""
    return _is_int(text) and int(text) >= 1


def _lfw_image_path(images_dir: Path, name: str, image_number: int) -> Path:
    """The LFW file of image ``image_number`` (from 1) of person ``name``."""
    return images_dir / name / f"{name}_{image_number:04d}.jpg"


def _parse_plain_line(
    pairs_file: Path, images_dir: Path, line_number: int, line: str
) -> tuple[Path, Path, bool, int | None]:
    """Parse ``path_a path_b same [fold]`` into paths, label and optional fold."""
    fields = line.split()
    expected = "'path_a path_b same [fold]' with same 1 or 0 and fold a non-negative integer"
    where = f"{pairs_file} line {line_number}"
    if len(fields) not in (3, 4):
        raise DatasetError(f"{where}: expected {expected}, got {len(fields)} fields {line.strip()!r}")
    if fields[2] not in ("0", "1"):
        raise DatasetError(f"{where}: expected {expected}, got same={fields[2]!r}")
    fold: int | None = None
    if len(fields) == 4:
        if not (_is_int(fields[3]) and int(fields[3]) >= 0):
            raise DatasetError(f"{where}: expected {expected}, got fold={fields[3]!r}")
        fold = int(fields[3])
    return images_dir / fields[0], images_dir / fields[1], fields[2] == "1", fold
