"""Probe lists for `vigil bench pairs --template-aging`: how they are read; one clear line for bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trainer.conftest import cli_error
from trainer.probe_list import read_probe_list


def make_images(folder: Path, *names: str) -> Path:
    """Empty files standing for photos (the reader checks they exist, nothing reads them)."""
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).touch()
    return folder


def test_first_line_of_each_person_enrols_them_and_the_rest_are_probes_in_order(tmp_path: Path) -> None:
    # given photos of two people, one listed by absolute path with a space in it, and comments
    images = make_images(tmp_path / "images", "ann/1.jpg", "ann/2.jpg", "bob/1.jpg", "bob/old photo.jpg")
    probes = tmp_path / "probes.txt"
    probes.write_text(
        "# name path, oldest first\n"
        "bob bob/1.jpg\n"
        "ann ann/1.jpg\n"
        "\n"
        f"bob {images / 'bob/old photo.jpg'}\n"
        "ann ann/2.jpg\n"
    )
    # when read
    listed = read_probe_list(probes, images)
    # then each person's first line is their enrolment, in order of first appearance
    assert listed.people == ["bob", "ann"]
    assert [(p.path, p.line) for p in listed.enrolment] == [
        (images / "bob/1.jpg", 2),
        (images / "ann/1.jpg", 3),
    ]
    # and the other lines are the probes, in file order, the absolute path kept as given
    assert [(p.person, p.path, p.line) for p in listed.probes] == [
        ("bob", images / "bob/old photo.jpg", 5),
        ("ann", images / "ann/2.jpg", 6),
    ]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        # no file at all (the list path is replaced by a missing one below)
        (None, "not found"),
        # only comments and blank lines
        ("# oldest first\n\n", "is empty"),
        # a line with a name but no path: its line number is given
        ("ann ann/1.jpg\n# a comment\nann\n", "line 3: expected 'NAME PATH'"),
        # bob has his enrolment photo and nothing after it
        ("ann ann/1.jpg\nbob bob/1.jpg\nann ann/2.jpg\n", "bob has only one photo (line 2)"),
        # the same photo twice (a probe that is its own template)
        ("ann ann/1.jpg\nann ./ann/1.jpg\n", "is already listed on line 1"),
        # a photo that is not in --images
        ("ann ann/1.jpg\nann ann/9.jpg\n", "1 of 2 images listed in"),
    ],
    ids=["missing-file", "empty", "bad-line", "one-photo", "repeated-photo", "missing-image"],
)
def test_bad_probe_lists_are_one_clear_line(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None, fragment: str
) -> None:
    images = make_images(tmp_path / "images", "ann/1.jpg", "ann/2.jpg", "bob/1.jpg")
    probes = tmp_path / "probes.txt"
    if text is None:
        probes = tmp_path / "nowhere.txt"
    else:
        probes.write_text(text)
    line = cli_error(capsys, "bench", "pairs", "--template-aging", str(probes), "--images", str(images))
    assert fragment in line and str(probes) in line, line


@pytest.mark.parametrize(
    ("mode", "options", "fragment"),
    [
        # folds and metric are for pairs lists
        ("--template-aging", ["--folds", "5"], "--folds goes with --pairs, not --template-aging"),
        # threshold and margin are for the aging walk (margin 0 counts as given)
        (
            "--pairs",
            ["--threshold", "0.9", "--margin", "0"],
            "--threshold and --margin go with --template-aging",
        ),
    ],
    ids=["folds-with-aging", "threshold-with-pairs"],
)
def test_options_of_the_other_mode_are_refused_before_any_work(
    home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mode: str,
    options: list[str],
    fragment: str,
) -> None:
    line = cli_error(
        capsys, "bench", "pairs", mode, str(tmp_path / "list.txt"), "--images", str(tmp_path), *options
    )
    assert fragment in line, line
