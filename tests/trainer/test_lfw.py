"""The pairs benchmark end to end on a small real pairs file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import LFW, require
from trainer.lfw import run_lfw_bench, run_pairs_bench
from trainer.pairs import read_pairs
from vigil.config import Settings
from vigil.errors import DatasetError

REQUIRED_KEYS = {
    "accuracy_mean",
    "accuracy_std",
    "auc",
    "tar_at_far_1e-3",
    "tar_at_far_1e-2",
    "eer",
    "threshold",
    "precision",
    "recall",
    "f1",
    "no_face_count",
}


def test_small_pairs_benchmark_writes_reports(settings: Settings, tmp_path: Path) -> None:
    # given 40 real LFW pairs (4 same + 4 different from each of the first 5 folds), in plain format
    images = require(LFW / "lfw-deepfunneled")
    all_pairs = read_pairs(require(LFW / "pairs.txt"), images)
    chosen = [
        p
        for fold in range(5)
        for same in (True, False)
        for p in [q for q in all_pairs if q.fold == fold and q.same == same][:4]
    ]
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text(
        "".join(
            f"{p.path_a.relative_to(images)} {p.path_b.relative_to(images)} {int(p.same)} {p.fold}\n"
            for p in chosen
        )
    )
    # when the pairs benchmark runs on it
    json_path = tmp_path / "out" / "pairs.json"
    result = run_pairs_bench(settings, read_pairs(pairs_file, images), images, json_path, "LFW subset")
    # then the JSON holds every required key, the Markdown and ROC plot sit beside it, and the subset is easy
    figures = json.loads(json_path.read_text())
    assert figures.keys() >= REQUIRED_KEYS, REQUIRED_KEYS - figures.keys()
    assert figures["pairs"] == 40 and figures["no_face_count"] == 0
    assert figures["accuracy_mean"] >= 0.9, figures["accuracy_mean"]
    # the threshold is a cosine (the default metric), with the Euclidean figures beside it
    assert figures["threshold_metric"] == "cosine (above)" and -1.0 < figures["threshold"] < 1.0, figures
    assert figures["euclidean_metric"]["accuracy_mean"] > 0.5, figures["euclidean_metric"]
    assert json_path.with_suffix(".md").read_text().startswith("## LFW subset")
    assert json_path.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "accuracy" in result.summary


def test_missing_lfw_folder_is_a_dataset_error(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"pairs\.txt"):
        run_lfw_bench(settings, tmp_path / "nowhere", tmp_path / "lfw.json")
