"""`vigil enroll / identify / people` as a user runs them: real processes, embedded Redis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import PEOPLE, require
from tests.test_cli import assert_one_line_error, run_vigil

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def test_enroll_identify_delete_round_trip(tmp_path: Path) -> None:
    obama, biden = require(PEOPLE / "obama.jpg"), require(PEOPLE / "biden.jpg")
    probe = require(PEOPLE / "obama2.jpg")
    # given Obama and Biden enrolled from a folder of people, one sub-folder each
    people = tmp_path / "people"
    for name, photo in (("Barack Obama", obama), ("Joe Biden", biden)):
        (people / name).mkdir(parents=True)
        (people / name / photo.name).write_bytes(photo.read_bytes())
    enrolled = run_vigil("enroll", "--from-dir", str(people), home=tmp_path)
    assert enrolled.returncode == 0, enrolled.stderr
    assert "enrolled Barack Obama: 1 photo(s) accepted" in enrolled.stdout
    # when another photo of Obama is identified, then he is named
    found = run_vigil("identify", "--json", str(probe), home=tmp_path)
    assert found.returncode == 0, found.stderr
    assert [face["name"] for face in json.loads(found.stdout)["faces"]] == ["Barack Obama"]
    # when Obama is deleted, then the same photo is unknown, in a new process
    deleted = run_vigil("people", "delete", "Barack Obama", home=tmp_path)
    assert "1 template(s) and 0 kept photo(s) are erased" in deleted.stdout, deleted.stderr
    after = run_vigil("identify", "--json", str(probe), home=tmp_path)
    assert [face["name"] for face in json.loads(after.stdout)["faces"]] == [None]
    listing = run_vigil("people", "list", home=tmp_path)
    assert "Joe Biden" in listing.stdout and "Barack Obama" not in listing.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        # deleting someone who was never enrolled
        (["people", "delete", "Nobody"], "nobody named 'Nobody'"),
        # enrolling from a folder that does not exist
        (["enroll", "--from-dir", "/nonexistent/people"], "is not a folder"),
        # a name without photos
        (["enroll", "Somebody"], "usage: vigil enroll NAME IMAGE"),
    ],
    ids=["delete-unknown", "missing-folder", "no-photos"],
)
def test_people_errors_are_one_line(tmp_path: Path, args: list[str], fragment: str) -> None:
    assert_one_line_error(run_vigil(*args, home=tmp_path), fragment)


def test_empty_folder_of_people_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert_one_line_error(
        run_vigil("enroll", "--from-dir", str(tmp_path / "empty"), home=tmp_path), "no sub-folders"
    )


def test_gallery_export_and_import_between_homes(tmp_path: Path) -> None:
    # given Biden enrolled in one installation
    first, second = tmp_path / "first", tmp_path / "second"
    assert run_vigil("enroll", "Joe Biden", str(require(PEOPLE / "biden.jpg")), home=first).returncode == 0
    backup = tmp_path / "gallery.jsonl"
    exported = run_vigil("gallery", "export", str(backup), home=first)
    assert "exported 1 people" in exported.stdout, exported.stderr
    # when the backup is imported into another installation, then Biden is known there
    imported = run_vigil("gallery", "import", str(backup), home=second)
    assert "imported 1 people" in imported.stdout, imported.stderr
    assert "Joe Biden" in run_vigil("people", "list", home=second).stdout
    # and a corrupt backup is refused in one line
    backup.write_text("not a gallery\n")
    assert_one_line_error(run_vigil("gallery", "import", str(backup), home=second), str(backup))


def test_kept_photos_are_reembedded_and_erased_from_the_command_line(tmp_path: Path) -> None:
    keep = tmp_path / "keep.yaml"
    keep.write_text("indexer:\n  keep_sources: true\n", encoding="utf-8")
    new_embedder = tmp_path / "new-embedder.yaml"
    new_embedder.write_text(
        "indexer:\n  keep_sources: true\nembedder:\n  flip_average: true\n", encoding="utf-8"
    )
    # given Obama enrolled by a user who opted in to keeping enrolment photos
    photo = require(PEOPLE / "obama.jpg")
    assert (
        run_vigil("--config", str(keep), "enroll", "Barack Obama", str(photo), home=tmp_path).returncode == 0
    )
    # when the embedder changes and the gallery is re-embedded
    reembedded = run_vigil("--config", str(new_embedder), "gallery", "reembed", home=tmp_path)
    # then Obama gets a template for the new embedder from his kept photo
    assert reembedded.returncode == 0, reembedded.stderr
    assert "1 template(s) added for sface_2021dec+flip," in reembedded.stdout
    # when he is deleted, then his templates in both spaces and both kept photos are erased
    deleted = run_vigil("people", "delete", "Barack Obama", home=tmp_path)
    assert "2 template(s) and 2 kept photo(s) are erased" in deleted.stdout, deleted.stderr
    assert not any((tmp_path / "sources").iterdir())


def test_bench_identify_without_lfw_is_a_one_line_error(tmp_path: Path) -> None:
    result = run_vigil("bench", "identify", "--data", str(tmp_path / "nowhere"), home=tmp_path)
    assert_one_line_error(result, "is not a folder")
