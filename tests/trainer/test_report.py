"""Tests for trainer.report: ROC PNGs, Markdown summaries and atomic JSON writes."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import pytest

from trainer.metrics import kfold_verification, roc_curve
from trainer.report import (
    markdown_table,
    plot_det,
    plot_roc,
    plot_score_histograms,
    verification_markdown,
    write_json,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_gaussian_scores(pairs_per_class: int = 3000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LFW-sized scores: genuine ~ N(2, 1), impostor ~ N(0, 1), 10 folds round-robin."""
    rng = np.random.default_rng(7)
    scores = np.concatenate([rng.normal(2.0, 1.0, pairs_per_class), rng.normal(0.0, 1.0, pairs_per_class)])
    labels = np.concatenate([np.ones(pairs_per_class, bool), np.zeros(pairs_per_class, bool)])
    return scores, labels, np.arange(scores.size) % 10


def read_png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, checking the signature first."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} does not start with the PNG signature"
    assert data[12:16] == b"IHDR", f"{path} does not start with an IHDR chunk"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_plot_roc_writes_a_png(tmp_path: Path) -> None:
    # given an LFW-sized ROC curve, which starts at FAR 0
    scores, labels, _ = make_gaussian_scores()
    far, tar, _ = roc_curve(scores, labels)
    path = tmp_path / "plots" / "roc.png"

    # when plotting it into a folder that does not exist yet
    plot_roc(far, tar, path, label="gaussian d'=2")

    # then a real PNG of the configured size is written and no temp file is left
    width, height = read_png_size(path)
    assert (width, height) == (720, 540), f"6x4.5 in at 120 dpi should be 720x540, got {width}x{height}"
    assert path.stat().st_size > 10_000, f"PNG suspiciously small: {path.stat().st_size} bytes"
    assert [entry.name for entry in path.parent.iterdir()] == ["roc.png"], "temp files should be gone"


def test_det_and_score_histograms_write_pngs(tmp_path: Path) -> None:
    # given LFW-sized genuine and impostor scores and their ROC curve
    scores, labels, _ = make_gaussian_scores()
    far, tar, _ = roc_curve(scores, labels)
    # when the DET curve (with FAR and FRR hitting 0 and 1) and the histograms are plotted
    plot_det(
        far, 1.0 - tar, tmp_path / "det.png", label="gaussian d'=2", rate_min=1 / 3000, operating_far=1e-2
    )
    plot_score_histograms(scores[labels], scores[~labels], tmp_path / "scores.png", threshold=1.5)
    # then both are real PNGs of the configured size
    assert read_png_size(tmp_path / "det.png") == (720, 540)
    assert read_png_size(tmp_path / "scores.png") == (720, 540)


@pytest.mark.parametrize(
    ("plot", "message"),
    [
        # a DET curve whose rate floor is not a probability below one half
        (lambda path: plot_det(np.zeros(2), np.ones(2), path, label="x", rate_min=0.0), "rate_min"),
        # histograms without impostor scores
        (lambda path: plot_score_histograms(np.ones(3), np.zeros(0), path), "impostor"),
    ],
    ids=["det-rate-min", "histogram-empty"],
)
def test_bad_plot_input_is_refused(tmp_path: Path, plot: Callable[[Path], None], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plot(tmp_path / "plot.png")
    assert not (tmp_path / "plot.png").exists()


def test_plot_roc_rejects_curve_without_positive_far(tmp_path: Path) -> None:
    # given a degenerate curve that never accepts an impostor
    far, tar = np.zeros(3), np.array([0.0, 0.5, 1.0])

    # when plotting without saying where the log axis starts
    # then the caller is told to pass far_min, and nothing is written
    with pytest.raises(ValueError, match="far_min"):
        plot_roc(far, tar, tmp_path / "roc.png", label="degenerate")
    assert not (tmp_path / "roc.png").exists(), "no file should be written on error"


def test_write_json_round_trips_and_replaces(tmp_path: Path) -> None:
    # given an existing report file in a nested folder
    path = tmp_path / "reports" / "lfw" / "summary.json"
    write_json(path, {"accuracy_mean": 0.5})

    # when writing a new summary over it
    scores, labels, folds = make_gaussian_scores(300)
    summary = kfold_verification(scores, labels, folds).to_dict()
    write_json(path, summary)

    # then the file holds exactly the new data and no temp file is left beside it
    assert json.loads(path.read_text(encoding="utf-8")) == summary, "JSON should round-trip"
    assert [entry.name for entry in path.parent.iterdir()] == ["summary.json"], "temp files should be gone"
    # new files are owner-only (vigil.files: what Vigil writes may be biometric data)
    assert path.stat().st_mode & 0o777 == 0o600, f"unexpected mode {oct(path.stat().st_mode & 0o777)}"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"eer": float("nan")}, pytest.raises(ValueError)),  # NaN is not strict JSON
        ({"path": Path("x")}, pytest.raises(TypeError)),  # a Path is not JSON
    ],
)
def test_write_json_failure_keeps_old_file(
    tmp_path: Path, data: dict[str, object], expected: AbstractContextManager[object]
) -> None:
    # given an existing report file
    path = tmp_path / "summary.json"
    write_json(path, {"pairs": 6000})

    # when a write fails
    with expected:
        write_json(path, data)  # type: ignore[arg-type]

    # then the old file is intact and no temp file is left
    assert json.loads(path.read_text(encoding="utf-8")) == {"pairs": 6000}, "old content should survive"
    assert [entry.name for entry in tmp_path.iterdir()] == ["summary.json"], "temp files should be gone"


def test_markdown_table_escapes_pipes() -> None:
    # given rows, one with a pipe in it
    rows = [("AUC", "0.9950"), ("a|b", "1")]

    # when rendering them
    table = markdown_table(rows)

    # then a header, a separator and escaped cells come out
    assert table == "| Metric | Value |\n| --- | ---: |\n| AUC | 0.9950 |\n| a\\|b | 1 |\n", f"got:\n{table}"


def test_markdown_table_takes_more_columns_and_refuses_ragged_rows() -> None:
    # given a header of three columns
    header = ("Figure", "Static", "Aging")
    # when rendering rows of three cells, then every value column is right-aligned
    table = markdown_table([("Recognised", "70%", "80%")], header=header)
    assert table == "| Figure | Static | Aging |\n| --- | ---: | ---: |\n| Recognised | 70% | 80% |\n", table
    # and a row of another width is an error, not a broken table
    with pytest.raises(ValueError, match="the header has 3 columns, some rows have \\[2\\]"):
        markdown_table([("Recognised", "70%")], header=header)


def test_verification_markdown_renders_a_summary() -> None:
    # given a k-fold summary
    scores, labels, folds = make_gaussian_scores(300)
    summary = kfold_verification(scores, labels, folds).to_dict()

    # when rendering it
    text = verification_markdown(summary, title="LFW")

    # then it has a heading, the accuracy as mean ± std and one row per fold
    assert text.startswith("## LFW\n"), f"missing heading:\n{text}"
    expected_accuracy = f"{summary['accuracy_mean']:.2%} ± {summary['accuracy_std']:.2%}"
    assert expected_accuracy in text, f"accuracy {expected_accuracy!r} missing:\n{text}"
    assert "| TAR @ FAR=1e-3 |" in text, f"TAR row missing:\n{text}"
    assert "| 9 |" in text and "| 10 |" not in text, f"expected folds 0-9:\n{text}"


def test_verification_markdown_skips_missing_keys() -> None:
    # given a partial summary
    # when rendering it
    text = verification_markdown({"auc": 0.5})

    # then only the present metric appears
    assert "| AUC | 0.5000 |" in text and "Accuracy" not in text, f"unexpected:\n{text}"
