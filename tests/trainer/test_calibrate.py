"""`vigil calibrate` on real photos and pairs, through the CLI: held-out FAR, promotion, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from indexer.calibration import CalibrationSource, active_calibration_path, read_calibration
from indexer.corrections import apply_feedback
from indexer.gallery import Gallery
from indexer.records import NewTemplate
from tests.conftest import LFW, PEOPLE, require, stop_embedded
from tests.trainer.conftest import cli_error, lfw_subset, write_plain_pairs
from trainer.embedding_cache import embed_dataset
from trainer.lfw import pair_scores
from vigil.artifacts import ArtifactRegistry
from vigil.cli import main
from vigil.config import Settings
from vigil.config.indexer import IndexerConfig
from vigil.config.redis import RedisConfig
from vigil.image import load_image
from vigil.models.pipeline import FacePipeline
from vigil.streams import connect_redis

# Folds 0-4 to fit on, 5-9 to check on: LFW folds share no people, and their people differ
# enough (one fold's impostors can score a FAR twice another's at one threshold) that a
# check on single folds tests the folds more than the interval; five pooled folds a side
# average that out. 5 matched and 20 mismatched pairs per fold: 100 impostor pairs a side
# support a FAR of 0.05 (59 needed) with ~4 false accepts, in ~400 images.
FIT_FOLDS, HELD_OUT_FOLDS = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
MATCHED, MISMATCHED = 5, 20
TARGET_FAR = 0.05
# The open-set protocol needs 10 people enrolled; at a FAR of 0.1, 29 strangers.
OPEN_SET_PEOPLE, PHOTOS_EACH, STRANGERS, OPEN_SET_FAR = 10, 3, 30, 0.1


def test_far_on_held_out_folds_is_within_the_reported_interval(
    home: Path, settings: Settings, pipeline: FacePipeline, tmp_path: Path
) -> None:
    # given 125 real LFW pairs of folds 0-4 in plain format, and 125 of folds 5-9 held out
    images = require(LFW / "lfw-deepfunneled")
    fit = [pair for fold in FIT_FOLDS for pair in lfw_subset(fold, MATCHED, MISMATCHED)]
    fit_file = write_plain_pairs(fit, images, tmp_path / "fit.txt", with_folds=True)
    held_out = [pair for fold in HELD_OUT_FOLDS for pair in lfw_subset(fold, MATCHED, MISMATCHED)]
    # when calibrated on folds 0-4 through the CLI, without promoting
    json_path = tmp_path / "out" / "calibration.json"
    data = ["--pairs", str(fit_file), "--images", str(images), "--target-far", str(TARGET_FAR)]
    status = main(["calibrate", *data, "--json", str(json_path), "--no-promote"])
    assert status == 0
    report = json.loads(json_path.read_text())
    # and the held-out folds' impostor pairs are scored at the calibrated threshold
    paths = [path for pair in held_out for path in (pair.path_a, pair.path_b)]
    embedded = embed_dataset(settings, pipeline, paths, images, use_cache=True, fallback="whole_image")
    scores = pair_scores(embedded, held_out, "cosine")
    impostor = scores[~np.array([pair.same for pair in held_out])]
    held_out_far = float(np.mean(impostor >= report["threshold"]))
    # then what is checked: the FAR measured on the held-out folds (other people, other pairs)
    # lies inside the 95% Clopper-Pearson interval reported for the threshold fitted on folds
    # 0-4, and the fit itself meets the target on its own pairs
    assert report["far"] <= TARGET_FAR and report["impostor_pairs"] == MISMATCHED * len(FIT_FOLDS)
    assert report["far_ci_low"] <= held_out_far <= report["far_ci_high"], (
        f"held-out FAR {held_out_far:.4f} outside [{report['far_ci_low']:.4f}, {report['far_ci_high']:.4f}]"
    )
    assert report["tar"] > 0.9, "LFW pairs at a 5% FAR are easy for this embedder"
    # and the calibration is stored as a version but not put in force
    registry = ArtifactRegistry(home)
    assert [artifact.version for artifact in registry.list("calibration")] == [report["calibration_version"]]
    assert registry.current("calibration") is None and not active_calibration_path(home).exists()
    stored = read_calibration(
        registry.get("calibration", report["calibration_version"]).file("calibration.json")
    )
    assert stored.verification is not None and stored.verification.threshold == report["threshold"]
    assert stored.data["identification_method"] == "impostor score distribution"
    # and the reports sit beside the JSON: a Markdown summary and three PNGs
    markdown = json_path.with_suffix(".md").read_text()
    assert f"{report['threshold']:.4f}" in markdown and "Clopper-Pearson" in markdown
    for name in ("calibration-roc.png", "calibration-det.png", "calibration-scores.png"):
        assert (json_path.parent / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_promoted_calibration_is_the_one_the_service_loads(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # given 5 people with 1 or 2 photos each (4 genuine, 32 impostor pairs) and a service whose
    # target FPIR is 0.1, which 32 impostor pairs support (29 needed)
    people = require(PEOPLE / "knn" / "train")
    monkeypatch.setenv("VIGIL_INDEXER__TARGET_FPIR", "0.1")
    json_path = tmp_path / "calibration.json"
    # when calibrated from the folder and promoted
    assert (
        main(["calibrate", "--from-dir", str(people), "--target-far", "0.1", "--json", str(json_path)]) == 0
    )
    report = json.loads(json_path.read_text())
    # then the person with a single photo is named as giving impostor pairs only
    assert "(alex_lacamoire): used for impostor pairs only" in caplog.text
    # and it is in force: the registry's current version, copied where the service reads it
    assert report["promoted"] and report["genuine_pairs"] == 4 and report["impostor_pairs"] == 32
    registry = ArtifactRegistry(home)
    current = registry.current("calibration")
    assert current is not None and current.version == report["calibration_version"]
    source = CalibrationSource(IndexerConfig(target_fpir=0.1), home, report["embedder"])
    rule = source.current()
    assert source.path() == active_calibration_path(home)
    assert report["calibration_id"] in rule.source
    assert rule.threshold >= report["threshold"] and rule.margin == 0.0


def test_open_set_rules_from_a_folder_of_many_people(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given 10 LFW people with 3 photos each and 30 people with one (strangers), and a service whose
    # target FPIR is the one calibrated for (the default 0.01 would need 299 strangers)
    monkeypatch.setenv("VIGIL_INDEXER__TARGET_FPIR", str(OPEN_SET_FAR))
    images = require(LFW / "lfw-deepfunneled")
    folders = sorted(path for path in images.iterdir() if path.is_dir())
    counts = {folder: len(list(folder.glob("*.jpg"))) for folder in folders}
    chosen = [f for f in folders if counts[f] >= PHOTOS_EACH][:OPEN_SET_PEOPLE]
    chosen += [f for f in folders if counts[f] == 1][:STRANGERS]
    root = tmp_path / "people"
    for folder in chosen:
        (root / folder.name).mkdir(parents=True)
        for photo in sorted(folder.glob("*.jpg"))[:PHOTOS_EACH]:
            (root / folder.name / photo.name).symlink_to(photo)
    json_path = tmp_path / "calibration.json"
    # when calibrated at a FAR of 0.1 (29 stranger photos needed, 30 there), not promoted
    data = ["--from-dir", str(root), "--target-far", str(OPEN_SET_FAR)]
    status = main(["calibrate", *data, "--json", str(json_path), "--no-promote"])
    assert status == 0
    report = json.loads(json_path.read_text())
    # then the identification rules come from the open-set protocol, one per gallery size up to
    # the 10 enrolled, never more lenient for bigger galleries
    assert report["identification_method"] == "open-set protocol"
    [rules] = report["identification"]
    sizes = [rule["gallery_identities"] for rule in rules["by_gallery_size"]] + [rules["gallery_identities"]]
    assert rules["target_fpir"] == OPEN_SET_FAR and sizes == [1, 3, OPEN_SET_PEOPLE]
    thresholds = [rule["threshold"] for rule in rules["by_gallery_size"]] + [rules["threshold"]]
    assert thresholds == sorted(thresholds)
    assert rules["unknown_probes"] == STRANGERS and rules["known_probes"] == OPEN_SET_PEOPLE * (
        PHOTOS_EACH - 1
    )
    assert report["genuine_pairs"] == OPEN_SET_PEOPLE * 3, "3 photos give 3 pairs each"


def _dummy_images(folder: Path, count: int) -> list[str]:
    """Empty .jpg files: the checks below fail before any image is opened."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"img{index}.jpg" for index in range(count)]
    for name in names:
        (folder / name).touch()
    return names


@pytest.mark.parametrize(
    ("lines", "extra", "fragment"),
    [
        # a pairs file naming images that are not there
        (["ann/1.jpg ann/2.jpg 1"], [], "images listed in"),
        # a line whose label is not 0 or 1
        (["img0.jpg img1.jpg maybe"], [], "line 1: expected 'path_a path_b same [fold]'"),
        # 2 impostor pairs cannot demonstrate a FAR of 1e-3
        (["img0.jpg img1.jpg 1", "img0.jpg img2.jpg 0", "img1.jpg img2.jpg 0"], [], "needs at least 2995"),
        # only genuine pairs
        (["img0.jpg img1.jpg 1"], ["--target-far", "0.5"], "no impostor (different people) pairs"),
        # the configured target FPIR (0.01) needs 299 impostor pairs: promoting would leave the service
        # without a rule, so it is refused
        (
            ["img0.jpg img1.jpg 1"] + [f"img0.jpg img{i}.jpg 0" for i in range(2, 62)],
            ["--target-far", "0.05"],
            "indexer.target_fpir=0.01",
        ),
    ],
    ids=["missing-images", "wrong-format", "target-unsupported", "one-class", "service-target-unsupported"],
)
def test_bad_pairs_input_is_one_clear_line(
    home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    lines: list[str],
    extra: list[str],
    fragment: str,
) -> None:
    images = tmp_path / "images"
    _dummy_images(images, 62)
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text("\n".join(lines) + "\n")
    line = cli_error(capsys, "calibrate", "--pairs", str(pairs_file), "--images", str(images), *extra)
    assert fragment in line, line


@pytest.mark.parametrize(
    ("photos", "args", "fragment"),
    [
        # every person folder holds one photo: no genuine pairs; the message names the folders
        ({"alice": 1, "bob": 1}, [], "(alice, bob), so there are no genuine pairs"),
        # an empty person folder is named
        ({"alice": 2, "carol": 0}, [], "(carol)"),
        # 4 photos of 2 people give 4 impostor pairs: far from the 2995 a FAR of 1e-3 needs
        ({"alice": 2, "bob": 2}, [], "needs at least 2995 impostor pairs"),
        # --images belongs with --pairs
        ({"alice": 2, "bob": 2}, ["--images", "."], "--images goes with --pairs"),
    ],
    ids=["all-single", "empty-folder", "target-unsupported", "images-with-from-dir"],
)
def test_bad_folder_input_is_one_clear_line(
    home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    photos: dict[str, int],
    args: list[str],
    fragment: str,
) -> None:
    root = tmp_path / "people"
    for name, count in photos.items():
        _dummy_images(root / name, count)
    line = cli_error(capsys, "calibrate", "--from-dir", str(root), *args)
    assert fragment in line, line


def test_pairs_without_images_folder_is_refused(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = cli_error(capsys, "calibrate", "--pairs", "pairs.txt")
    assert "--pairs needs --images" in line, line


@pytest.mark.slow
def test_calibrate_with_feedback_counts_the_corrections(
    home: Path, tmp_path: Path, pipeline: FacePipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the 5-person folder (4 genuine, 32 impostor pairs) and, in the gallery the CLI
    # uses (the embedded Redis under VIGIL_HOME), Obama enrolled and Biden's face marked as not him
    people = require(PEOPLE / "knn" / "train")
    monkeypatch.delenv("REDIS_URL", raising=False)
    client = connect_redis(RedisConfig(url=None), home)
    try:
        gallery = Gallery(client)
        obama, biden = (
            pipeline.central_face(load_image(PEOPLE / name)) for name in ("obama.jpg", "biden.jpg")
        )
        assert obama is not None and biden is not None
        version = pipeline.embedder.version
        gallery.enroll("Barack Obama", [NewTemplate(version, obama.embedding)])
        apply_feedback(gallery, "event-1", "not", "Barack Obama", version, biden.embedding)
        json_path = tmp_path / "calibration.json"
        # when calibrated with the feedback, without promoting
        data = ["--from-dir", str(people), "--target-far", "0.1", "--json", str(json_path)]
        assert main(["calibrate", *data, "--no-promote", "--with-feedback"]) == 0
        report = json.loads(json_path.read_text())
        # then the correction is one more impostor pair, named in the report
        assert report["impostor_pairs"] == 33 and report["genuine_pairs"] == 4
        assert report["feedback_impostor_pairs"] == 1 and report["feedback_genuine_pairs"] == 0
        assert "from `vigil feedback`: 0 genuine, 1 impostor" in json_path.with_suffix(".md").read_text()
    finally:
        stop_embedded(client)
        client.close()
