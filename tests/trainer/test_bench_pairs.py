"""`vigil bench pairs`: the LFW protocol on any pairs list, face crops included, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import LFW, dlib_settings, require
from tests.trainer.conftest import cli_error, lfw_subset, write_plain_pairs
from tests.trainer.test_lfw import REQUIRED_KEYS
from trainer.embedding_cache import embed_dataset
from vigil.cli import main
from vigil.config import Settings
from vigil.image import load_image
from vigil.models.pipeline import FacePipeline

# The pairs test_calibrate fits on (embedded once per session): 5 matched + 20 mismatched of folds 0-4.
FOLDS_USED, MATCHED, MISMATCHED = (0, 1, 2, 3, 4), 5, 20
# A 70 px centre crop of these 250 px LFW images holds the face from brows to chin, and MTCNN
# finds no face in it (checked by the test): a stand-in for the tight crops of AgeDB-style sets.
CROP_PX = 70
CROPPED = ("Aaron_Peirsol_0001", "Aaron_Peirsol_0003")


def test_plain_pairs_without_folds_are_dealt_into_the_folds_asked_for(home: Path, tmp_path: Path) -> None:
    # given 125 real LFW pairs as plain lines without a fold column
    images = require(LFW / "lfw-deepfunneled")
    pairs = [pair for fold in FOLDS_USED for pair in lfw_subset(fold, MATCHED, MISMATCHED)]
    pairs_file = write_plain_pairs(pairs, images, tmp_path / "pairs.txt", with_folds=False)
    # when benchmarked with --folds 5
    json_path = tmp_path / "out" / "pairs.json"
    data = ["--pairs", str(pairs_file), "--images", str(images), "--folds", "5"]
    status = main(["bench", "pairs", *data, "--json", str(json_path), "--metric", "cosine"])
    assert status == 0
    figures = json.loads(json_path.read_text())
    # then the JSON has the keys of `vigil bench lfw`, 5 folds, the fallback named, and the
    # Markdown and ROC plot sit beside it
    assert figures.keys() >= REQUIRED_KEYS, REQUIRED_KEYS - figures.keys()
    assert figures["pairs"] == len(pairs) and len(figures["fold_accuracies"]) == 5
    assert figures["protocol"].startswith("5-fold") and figures["no_face_fallback"] == "whole_image"
    assert figures["accuracy_mean"] >= 0.85, figures["accuracy_mean"]
    markdown = json_path.with_suffix(".md").read_text()
    assert (
        "5-fold" in markdown and f"Images without a detected face: {figures['no_face_count']} of" in markdown
    )
    assert json_path.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_crops_without_a_detected_face_are_embedded_whole_and_counted(
    home: Path,
    settings: Settings,
    dlib_pipeline: FacePipeline,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # MTCNN's family: MTCNN misses these 70 px crops; YuNet finds both
    monkeypatch.setenv("VIGIL_DETECTOR__BACKEND", "mtcnn")
    monkeypatch.setenv("VIGIL_EMBEDDER__BACKEND", "dlib_resnet")
    settings, pipeline = dlib_settings(settings), dlib_pipeline
    # given two tight face crops (PNG, so no re-compression) beside whole LFW photos
    lfw = require(LFW / "lfw-deepfunneled")
    images = tmp_path / "images"
    images.mkdir()
    for name in CROPPED:
        photo = load_image(lfw / name.rsplit("_", 1)[0] / f"{name}.jpg")
        offset = (photo.shape[0] - CROP_PX) // 2
        crop = photo[offset : offset + CROP_PX, offset : offset + CROP_PX]
        cv2.imwrite(str(images / f"{name}_crop.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    for name in ("Aaron_Peirsol_0002", "Aaron_Peirsol_0004", "Abdullah_Gul_0001", "Abel_Pacheco_0001"):
        (images / f"{name}.jpg").symlink_to(lfw / name.rsplit("_", 1)[0] / f"{name}.jpg")
    # and 2 folds, each with a genuine and an impostor pair
    (tmp_path / "pairs.txt").write_text(
        "Aaron_Peirsol_0001_crop.png Aaron_Peirsol_0003_crop.png 1 0\n"
        "Aaron_Peirsol_0001_crop.png Abdullah_Gul_0001.jpg 0 0\n"
        "Aaron_Peirsol_0002.jpg Aaron_Peirsol_0004.jpg 1 1\n"
        "Aaron_Peirsol_0002.jpg Abel_Pacheco_0001.jpg 0 1\n"
    )
    # when benchmarked
    json_path = tmp_path / "pairs.json"
    args = ["--pairs", str(tmp_path / "pairs.txt"), "--images", str(images), "--json", str(json_path)]
    assert main(["bench", "pairs", *args]) == 0
    # then both crops are counted as without a face, in the JSON and in the Markdown
    figures = json.loads(json_path.read_text())
    assert figures["no_face_count"] == 2 and figures["images"] == 6
    assert "2 of 6, embedded whole" in json_path.with_suffix(".md").read_text()
    # and the whole-crop embedding is still the person's: nearer their other photo than a stranger's
    paths = [images / f"{name}.jpg" for name in ("Aaron_Peirsol_0002", "Abdullah_Gul_0001")]
    embedded = embed_dataset(
        settings,
        pipeline,
        [images / "Aaron_Peirsol_0001_crop.png", *paths],
        images,
        use_cache=True,
        fallback="whole_image",
    )
    unit = embedded.embeddings / np.linalg.norm(embedded.embeddings, axis=1, keepdims=True)
    assert embedded.detected.tolist() == [False, True, True]
    assert unit[0] @ unit[1] > unit[0] @ unit[2], (unit[0] @ unit[1], unit[0] @ unit[2])


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        # images that are not in --images
        ("ann/1.jpg ann/2.jpg 1\n", "images listed in"),
        # a fold that is not a number
        ("a.jpg b.jpg 1 first\n", "line 1: expected 'path_a path_b same [fold]'"),
        # an LFW header promising more pairs than the file has
        ("10 300\nAaron 1 2\n", "has 1 pair lines but its header '10 300'"),
    ],
    ids=["missing-images", "wrong-format", "short-lfw-file"],
)
def test_bad_pairs_files_are_one_clear_line(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, fragment: str
) -> None:
    (tmp_path / "a.jpg").touch()
    (tmp_path / "b.jpg").touch()
    (tmp_path / "pairs.txt").write_text(text)
    line = cli_error(
        capsys, "bench", "pairs", "--pairs", str(tmp_path / "pairs.txt"), "--images", str(tmp_path)
    )
    assert fragment in line, line


def test_one_fold_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "pairs", "--pairs", "p.txt", "--images", ".", "--folds", "1"])
    assert exit_info.value.code == 2
    assert "need at least 2 folds" in capsys.readouterr().err
