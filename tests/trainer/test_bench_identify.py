"""`vigil bench identify` on a small real slice of LFW, and the rules it fits per gallery size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from indexer.calibration import read_calibration
from tests.conftest import LFW, require
from trainer.bench_identify import EmbeddedSplit, fit_by_gallery_size, open_set_split, run_identify_bench
from vigil.config import Settings
from vigil.errors import DatasetError

MULTI_IMAGE_PEOPLE = ("Tony_Blair", "Serena_Williams", "Vladimir_Putin", "Ariel_Sharon", "Hugo_Chavez")
SINGLE_IMAGE_PEOPLE = ("Aaron_Eckhart", "Abba_Eban", "Abdel_Aziz_Al-Hakim", "Adam_Ant", "Aaron_Guiel")
IMAGES_PER_PERSON = 4


def _small_lfw(root: Path) -> Path:
    """A folder-per-person slice of LFW: a few people with several images, a few with one."""
    images = require(LFW / "lfw-deepfunneled")
    for person in MULTI_IMAGE_PEOPLE + SINGLE_IMAGE_PEOPLE:
        photos = sorted((images / person).glob("*.jpg"))[:IMAGES_PER_PERSON]
        (root / person).mkdir(parents=True)
        for photo in photos:
            (root / person / photo.name).symlink_to(photo)
    return root


def test_split_follows_the_protocol(tmp_path: Path) -> None:
    split = open_set_split(_small_lfw(tmp_path / "lfw"))
    assert [person for person, _ in split.gallery] == sorted(MULTI_IMAGE_PEOPLE)
    assert all(image.name.endswith("_0001.jpg") for _, image in split.gallery)
    assert len(split.known) == len(MULTI_IMAGE_PEOPLE) * (IMAGES_PER_PERSON - 1)
    assert len(split.unknown) == len(SINGLE_IMAGE_PEOPLE)


@pytest.mark.slow
def test_small_open_set_bench_writes_reports_and_a_usable_calibration(
    settings: Settings, tmp_path: Path
) -> None:
    data = _small_lfw(tmp_path / "lfw")
    calibration_file = tmp_path / "calibration.json"
    result = run_identify_bench(
        settings,
        data,
        tmp_path / "identify.json",
        use_cache=False,
        calibration_out=calibration_file,
        target_fpirs=(0.2,),
    )
    figures = json.loads((tmp_path / "identify.json").read_text())
    # 15 known probes of 5 well-photographed people: nearly all must be named right.
    assert figures["rank1"] >= 0.8
    assert figures["known_probes"] == 15 and figures["unknown_probes"] == 5
    assert (tmp_path / "identify.png").stat().st_size > 0 and "Rank-1" in (
        tmp_path / "identify.md"
    ).read_text()
    calibration = read_calibration(calibration_file)
    assert calibration.embedder_version == figures["embedder"]
    assert calibration.for_target(0.2).fpir <= 0.2
    assert "rank-1" in result.summary


def test_rules_never_loosen_as_the_gallery_grows() -> None:
    rng = np.random.default_rng(0)
    people = [f"p{i}" for i in range(60)]
    centres = rng.normal(size=(60, 16)).astype(np.float32)
    embedded = EmbeddedSplit(
        gallery_people=people,
        gallery=centres + 0.3 * rng.normal(size=centres.shape).astype(np.float32),
        known_people=people * 2,
        known=np.concatenate([centres, centres]) + 0.3 * rng.normal(size=(120, 16)).astype(np.float32),
        unknown=rng.normal(size=(200, 16)).astype(np.float32),
    )
    fitted = fit_by_gallery_size(embedded, 0.05, sizes=(5, 20))
    assert [size for size, _ in fitted] == [5, 20, 60]
    thresholds = [point.threshold for _, point in fitted]
    margins = [point.margin for _, point in fitted]
    assert thresholds == sorted(thresholds) and margins == sorted(margins)


def test_a_folder_without_single_image_people_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    for name in ("a_0001.jpg", "a_0002.jpg"):
        (tmp_path / "a" / name).write_bytes(b"")
    with pytest.raises(DatasetError, match="people with one image"):
        open_set_split(tmp_path)
