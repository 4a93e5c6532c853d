"""Tests for trainer.pairs: LFW pairs.txt and plain pair lists."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pytest

from trainer.pairs import DEFAULT_FOLDS, Pair, read_lfw_pairs, read_pairs, read_plain_pairs
from vigil.errors import DatasetError

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
LFW_DIR = SHARED_DATA / "lfw"

# A tiny View-2 file: 2 folds x (1 matched + 1 mismatched) pairs.
TINY_LFW = ["2\t1", "Ann\t1\t2", "Ann\t1\tBob\t1", "Bob\t1\t2", "Bob\t2\tAnn\t2"]
TINY_PEOPLE = {"Ann": 2, "Bob": 2}


def make_lfw_tree(root: Path, people: dict[str, int]) -> Path:
    """Create ``root/<name>/<name>_<i:04d>.jpg`` placeholder files and return ``root``."""
    for name, count in people.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for number in range(1, count + 1):
            (root / name / f"{name}_{number:04d}.jpg").write_bytes(b"\xff\xd8placeholder")
    return root


def write_lines(path: Path, lines: Iterable[str]) -> Path:
    """Write ``lines`` to ``path``, newline-terminated, and return ``path``."""
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.skipif(not (LFW_DIR / "pairs.txt").is_file(), reason=f"LFW not found under {LFW_DIR}")
def test_real_lfw_pairs_parse_into_ten_balanced_folds() -> None:
    # given the real LFW View-2 pairs.txt and the deep-funneled images
    pairs_file, images_dir = LFW_DIR / "pairs.txt", LFW_DIR / "lfw-deepfunneled"

    # when reading it (which also checks every image exists)
    pairs = read_lfw_pairs(pairs_file, images_dir)

    # then there are 6000 pairs: 10 folds of 300 matched + 300 mismatched
    assert len(pairs) == 6000, f"expected 6000 pairs, got {len(pairs)}"
    assert Counter(pair.fold for pair in pairs) == dict.fromkeys(range(10), 600), (
        "each fold should hold 600 pairs"
    )
    assert sum(pair.same for pair in pairs) == 3000, "half of the pairs should be matched"
    same_per_fold = Counter(pair.fold for pair in pairs if pair.same)
    assert same_per_fold == dict.fromkeys(range(10), 300), (
        f"each fold should hold 300 matched, got {same_per_fold}"
    )
    # and the first line 'Abel_Pacheco 1 4' maps onto the LFW file naming
    assert pairs[0] == Pair(
        images_dir / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg",
        images_dir / "Abel_Pacheco" / "Abel_Pacheco_0004.jpg",
        same=True,
        fold=0,
    ), f"unexpected first pair {pairs[0]}"
    assert all(pair.path_a.parent.name != pair.path_b.parent.name for pair in pairs if not pair.same), (
        "mismatched pairs must name two different people"
    )


def test_tiny_lfw_file_parses_folds_and_labels(tmp_path: Path) -> None:
    # given a two-fold LFW file and its images
    images_dir = make_lfw_tree(tmp_path / "images", TINY_PEOPLE)
    pairs_file = write_lines(tmp_path / "pairs.txt", TINY_LFW)

    # when reading it
    pairs = read_lfw_pairs(pairs_file, images_dir)

    # then matched lines come first in each fold and paths follow the LFW naming
    assert [(pair.same, pair.fold) for pair in pairs] == [(True, 0), (False, 0), (True, 1), (False, 1)], (
        f"unexpected labels/folds {pairs}"
    )
    assert pairs[1].path_b == images_dir / "Bob" / "Bob_0001.jpg", f"unexpected path {pairs[1].path_b}"


def test_one_number_header_reads_as_one_fold(tmp_path: Path) -> None:
    # given a View-1 style file (pairsDevTest.txt) whose header is only the pairs per class
    images_dir = make_lfw_tree(tmp_path / "images", TINY_PEOPLE)
    pairs_file = write_lines(
        tmp_path / "pairsDevTest.txt", ["2", TINY_LFW[1], TINY_LFW[3], TINY_LFW[2], TINY_LFW[4]]
    )

    # when reading it
    pairs = read_lfw_pairs(pairs_file, images_dir)

    # then all pairs are in fold 0, matched ones first
    assert [(pair.same, pair.fold) for pair in pairs] == [(True, 0), (True, 0), (False, 0), (False, 0)], (
        f"unexpected labels/folds {pairs}"
    )


@pytest.mark.parametrize(
    ("lines", "expected_message"),
    [
        # header is not numeric
        (["ten 300", *TINY_LFW[1:]], r"line 1: expected the header"),
        # zero pairs per class
        (["2 0", *TINY_LFW[1:]], r"line 1: expected the header"),
        # a mismatched line where a matched one belongs
        (
            ["2\t1", "Ann\t1\tBob\t1", *TINY_LFW[2:]],
            r"line 2 \(fold 1 of 2, pair 1 of 2\): expected 'name i j'",
        ),
        # a matched line with a field too many
        (
            [*TINY_LFW[:3], "Bob\t1\t2\tx", TINY_LFW[4]],
            r"line 4 \(fold 2 of 2, pair 1 of 2\): expected 'name i j'",
        ),
        # a mismatched line missing its second image number
        ([*TINY_LFW[:2], "Ann\t1\tBob", *TINY_LFW[3:]], r"line 3 .*expected 'name1 i name2 j'"),
        # an image number that is not a number
        ([*TINY_LFW[:4], "Bob\tx\tAnn\t2"], r"line 5 .*positive image numbers"),
        # LFW numbers images from 1
        ([TINY_LFW[0], "Ann\t0\t2", *TINY_LFW[2:]], r"line 2 .*positive image numbers"),
        # a pair line is missing
        (TINY_LFW[:-1], r"has 3 pair lines .* = 4"),
        # one line too many
        ([*TINY_LFW, "Ann\t1\t2"], r"has 5 pair lines .* = 4"),
        # empty file
        ([], r"empty"),
    ],
)
def test_malformed_lfw_files_raise_dataset_error(
    tmp_path: Path, lines: list[str], expected_message: str
) -> None:
    # given a malformed LFW pairs file and a complete image folder
    images_dir = make_lfw_tree(tmp_path / "images", TINY_PEOPLE)
    pairs_file = write_lines(tmp_path / "pairs.txt", lines)

    # when reading it
    # then a DatasetError names the line and what was expected, on one line
    with pytest.raises(DatasetError, match=expected_message) as error:
        read_lfw_pairs(pairs_file, images_dir)
    assert "\n" not in str(error.value), f"message should be one line: {error.value}"


def test_missing_images_are_counted_and_named(tmp_path: Path) -> None:
    # given an LFW file whose images for Bob were never extracted
    images_dir = make_lfw_tree(tmp_path / "images", {"Ann": 2})
    pairs_file = write_lines(tmp_path / "pairs.txt", TINY_LFW)

    # when reading it
    # then the error counts the missing files and names the first ones
    with pytest.raises(DatasetError, match=r"2 of 4 images .* missing \(first: .*Bob_0001\.jpg") as error:
        read_lfw_pairs(pairs_file, images_dir)
    assert "images_dir" in str(error.value), f"message should say what to do: {error.value}"


def test_image_check_can_be_skipped(tmp_path: Path) -> None:
    # given an LFW file and no images at all
    pairs_file = write_lines(tmp_path / "pairs.txt", TINY_LFW)

    # when reading it without the image check
    pairs = read_lfw_pairs(pairs_file, tmp_path / "absent", check_images=False)

    # then the pairs are still parsed
    assert len(pairs) == 4, f"expected 4 pairs, got {len(pairs)}"


@pytest.mark.parametrize("reader", [read_lfw_pairs, read_plain_pairs, read_pairs])
def test_missing_pairs_file_raises_dataset_error(tmp_path: Path, reader: object) -> None:
    # given a path with no file
    missing = tmp_path / "nope.txt"

    # when reading it
    # then the error names the file and says what to do
    with pytest.raises(DatasetError, match=r"nope\.txt not found; check the path"):
        reader(missing, tmp_path)  # type: ignore[operator]


def test_plain_pairs_with_folds(tmp_path: Path) -> None:
    # given a plain list with explicit folds, a comment and a blank line
    images_dir = make_lfw_tree(tmp_path / "images", TINY_PEOPLE)
    pairs_file = write_lines(
        tmp_path / "pairs.txt",
        [
            "# path_a path_b same fold",
            "Ann/Ann_0001.jpg Ann/Ann_0002.jpg 1 3",
            "",
            "Ann/Ann_0001.jpg Bob/Bob_0002.jpg 0 7",
        ],
    )

    # when reading it
    pairs = read_plain_pairs(pairs_file, images_dir)

    # then paths are resolved against images_dir and folds are kept
    assert pairs == [
        Pair(images_dir / "Ann/Ann_0001.jpg", images_dir / "Ann/Ann_0002.jpg", same=True, fold=3),
        Pair(images_dir / "Ann/Ann_0001.jpg", images_dir / "Bob/Bob_0002.jpg", same=False, fold=7),
    ], f"unexpected pairs {pairs}"


def test_plain_pairs_without_folds_are_dealt_round_robin(tmp_path: Path) -> None:
    # given 25 plain pairs without a fold column
    images_dir = make_lfw_tree(tmp_path / "images", TINY_PEOPLE)
    pairs_file = write_lines(tmp_path / "pairs.txt", ["Ann/Ann_0001.jpg Bob/Bob_0001.jpg 0"] * 25)

    # when reading them
    pairs = read_plain_pairs(pairs_file, images_dir)

    # then pair k lands in fold k % 10
    assert [pair.fold for pair in pairs] == [index % DEFAULT_FOLDS for index in range(25)], (
        "round-robin folds"
    )


@pytest.mark.parametrize(
    ("lines", "expected_message"),
    [
        (["a.jpg b.jpg"], r"line 1: expected 'path_a path_b same \[fold\]'.*got 2 fields"),  # label missing
        (["a.jpg b.jpg 1 0 extra"], r"line 1: .*got 5 fields"),  # one field too many
        (["# header", "a.jpg b.jpg yes"], r"line 2: .*same='yes'"),  # label must be 1 or 0
        (["a.jpg b.jpg 1 -1"], r"line 1: .*fold='-1'"),  # folds are numbered from 0
        (["a.jpg b.jpg 1 0", "a.jpg b.jpg 0"], r"1 of 2 lines give a fold"),  # fold column on some lines only
        (["# only a comment"], r"has no pairs"),  # nothing to evaluate
    ],
)
def test_malformed_plain_files_raise_dataset_error(
    tmp_path: Path, lines: list[str], expected_message: str
) -> None:
    # given a malformed plain pairs file
    pairs_file = write_lines(tmp_path / "pairs.txt", lines)

    # when reading it
    # then a DatasetError names the line and what was expected
    with pytest.raises(DatasetError, match=expected_message):
        read_plain_pairs(pairs_file, tmp_path, check_images=False)


@pytest.mark.parametrize(
    ("lines", "expected_folds"),
    [
        (TINY_LFW, [0, 0, 1, 1]),  # LFW header '2 1': LFW reader
        (["Ann/Ann_0001.jpg Bob/Bob_0001.jpg 1 5"], [5]),  # path-like first line: plain reader
        (
            ["# comment first", "", *TINY_LFW],
            [0, 0, 1, 1],
        ),  # comments and blanks before the header are skipped
    ],
)
def test_read_pairs_detects_the_format(tmp_path: Path, lines: list[str], expected_folds: list[int]) -> None:
    # given a pairs file in either format
    images_dir = make_lfw_tree(tmp_path / "images", TINY_PEOPLE)
    pairs_file = write_lines(tmp_path / "pairs.txt", lines)

    # when reading it without saying which format it is
    pairs = read_pairs(pairs_file, images_dir)

    # then the right reader is used
    assert [pair.fold for pair in pairs] == expected_folds, f"unexpected folds {pairs}"


def test_read_pairs_rejects_empty_file(tmp_path: Path) -> None:
    # given an empty file
    pairs_file = write_lines(tmp_path / "pairs.txt", [])

    # when detecting its format
    # then it is reported as empty
    with pytest.raises(DatasetError, match="is empty"):
        read_pairs(pairs_file, tmp_path)
