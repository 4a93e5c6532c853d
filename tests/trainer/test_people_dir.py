"""Folder-per-person datasets: reading them and every (or a sample of) genuine and impostor pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainer.people_dir import pair_indices, read_people_dir
from vigil.errors import DatasetError


def make_people(root: Path, photos: dict[str, int]) -> Path:
    """A folder per person holding that many (empty) .jpg files: reading never opens them."""
    for name, count in photos.items():
        (root / name).mkdir(parents=True)
        for index in range(count):
            (root / name / f"{index}.jpg").touch()
    return root


def test_counts_and_pairs_of_a_small_folder(tmp_path: Path) -> None:
    # given 3 people with 3, 2 and 1 photos (and a text file, which is not a photo)
    root = make_people(tmp_path / "people", {"ann": 3, "bob": 2, "cy": 1})
    (root / "ann" / "notes.txt").touch()
    people = read_people_dir(root)
    # when every pair is listed
    pairs = pair_indices(people.labels())
    # then 3 + 1 genuine pairs and 15 - 4 impostor pairs, each within / across people
    assert people.genuine_pair_count == 4 and people.impostor_pair_count == 11
    assert pairs.genuine.shape == (2, 4) and pairs.impostor.shape == (2, 11) and not pairs.sampled
    labels = people.labels()
    assert (labels[pairs.genuine[0]] == labels[pairs.genuine[1]]).all()
    assert (labels[pairs.impostor[0]] != labels[pairs.impostor[1]]).all()
    assert people.single_image_people == ["cy"]


def test_beyond_the_cap_pairs_are_a_seeded_sample_without_repeats() -> None:
    # given 200 people with 10 photos each: 9000 genuine and 1,990,000 impostor pairs
    labels = np.repeat(np.arange(200, dtype=np.int64), 10)
    # when capped at 1000 pairs of each kind, twice with the same seed
    first, again = pair_indices(labels, max_pairs=1000), pair_indices(labels, max_pairs=1000)
    # then each kind is 1000 distinct valid pairs, the same both times
    assert first.sampled
    for kind, same in ((first.genuine, True), (first.impostor, False)):
        assert kind.shape == (2, 1000) and (kind[0] < kind[1]).all()
        assert ((labels[kind[0]] == labels[kind[1]]) == same).all()
        assert len({(a, b) for a, b in kind.T.tolist()}) == 1000
    np.testing.assert_array_equal(first.impostor, again.impostor)


@pytest.mark.parametrize(
    ("photos", "fragment"),
    [
        # every person has one photo: no genuine pairs, and the message names them
        ({"alice": 1, "bob": 1}, "every person in"),
        # an empty person folder is named
        ({"alice": 2, "bob": 2, "carol": 0}, "(carol)"),
        # one person cannot give impostor pairs
        ({"alice": 3}, "at least two people"),
    ],
    ids=["all-single", "empty-folder", "one-person"],
)
def test_unusable_folders_are_refused(tmp_path: Path, photos: dict[str, int], fragment: str) -> None:
    with pytest.raises(DatasetError) as error:
        read_people_dir(make_people(tmp_path / "people", photos))
    assert fragment in str(error.value), str(error.value)
