"""`vigil bench detect`: MTCNN (ours, facenet-pytorch's) and YuNet (two runtimes) side by side."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import people_image
from tests.models.onnx_models import installed_models_dir
from tests.trainer.conftest import cli_error
from trainer.bench_detect import (
    CONTENDERS,
    LABELS,
    TARGET_FRAMES,
    DetectBenchResult,
    bench_frames,
    run_detect_bench,
)
from trainer.report import write_json
from vigil.errors import ModelLoadError

BATCH_SIZES = (1, 2)


@pytest.fixture(scope="module")
def result() -> DetectBenchResult:
    """One round on the bench's own 640×360 frame (two clear portraits side by side), batches 1 and 2."""
    frame = bench_frames()[TARGET_FRAMES]
    return run_detect_bench(
        installed_models_dir(), repeats=1, batch_sizes=BATCH_SIZES, frames={TARGET_FRAMES: frame}
    )


def test_every_detector_is_timed_on_every_frame_and_batch(result: DetectBenchResult) -> None:
    # given one frame benchmarked at two batch sizes
    # then there is one row per batch size, each timing all four detectors in a fixed order
    assert [(row.frames, row.batch) for row in result.rows] == [(TARGET_FRAMES, 1), (TARGET_FRAMES, 2)]
    for row in result.rows:
        assert (row.width, row.height) == (640, 360), f"frame size {row.width}×{row.height}"
        assert tuple(timing.contender for timing in row.timings) == CONTENDERS, row.timings
        for timing in row.timings:
            assert 0 < timing.ms_per_frame < 10_000, f"batch {row.batch}: {timing}"


def test_detectors_agree_on_the_faces_of_a_clear_frame(result: DetectBenchResult) -> None:
    # given a frame holding two clear frontal portraits
    # then every detector finds both faces, at every batch size
    for row in result.rows:
        faces = {timing.contender: timing.faces for timing in row.timings}
        assert set(faces.values()) == {2}, f"batch {row.batch}: {faces}"


def test_speedups_are_ratios_of_the_timings(result: DetectBenchResult) -> None:
    for row in result.rows:
        # when the speed-ups are read off a row
        ms = {timing.contender: timing.ms_per_frame for timing in row.timings}
        # then each is the baseline's ms over the contender's (above 1 = the contender is faster)
        assert row.speedup("mtcnn", "facenet") == pytest.approx(ms["facenet"] / ms["mtcnn"])
        assert row.speedup("yunet_opencv", "mtcnn") == pytest.approx(ms["mtcnn"] / ms["yunet_opencv"])
        assert row.speedup("yunet_torch", "mtcnn") == pytest.approx(ms["mtcnn"] / ms["yunet_torch"])


def test_json_report_holds_each_detector_and_the_target(result: DetectBenchResult, tmp_path: Path) -> None:
    # when the result is written by the report writer and read back
    path = tmp_path / "detect.json"
    write_json(path, result.to_dict())
    report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    # then it names the target, the context, and per row each detector's ms/frame and faces
    assert report["target"] == {"frames": TARGET_FRAMES, "yunet_speedup_vs_mtcnn": 4.0}, report["target"]
    assert report["repeats"] == 1 and report["torch_threads"] >= 1, report
    assert len(report["rows"]) == len(BATCH_SIZES)
    for row in report["rows"]:
        assert list(row["detectors"]) == list(CONTENDERS), row["detectors"]
        for figures in row["detectors"].values():
            assert set(figures) == {"ms_per_frame", "faces"}, figures
            assert figures["ms_per_frame"] > 0 and figures["faces"] == 2, figures
        assert set(row["speedup"]) == {"mtcnn_vs_facenet", "yunet_opencv_vs_mtcnn", "yunet_torch_vs_mtcnn"}
        assert all(math.isfinite(ratio) and ratio > 0 for ratio in row["speedup"].values()), row["speedup"]


def test_markdown_report_has_a_row_per_configuration_and_the_target_lines(result: DetectBenchResult) -> None:
    # when the result is rendered as Markdown
    markdown = result.to_markdown()
    lines = markdown.splitlines()
    # then the header names every detector, each configuration has one table row, and the target is judged
    [header] = [line for line in lines if line.startswith("| frames |")]
    assert all(LABELS[contender] in header for contender in CONTENDERS), header
    table_rows = [line for line in lines if line.startswith(f"| {TARGET_FRAMES} |")]
    assert len(table_rows) == len(BATCH_SIZES), table_rows
    assert all(line.endswith("| 2 / 2 / 2 / 2 |") for line in table_rows), table_rows
    target_lines = [line for line in lines if line.startswith(f"- YuNet vs MTCNN per {TARGET_FRAMES}")]
    assert len(target_lines) == len(BATCH_SIZES), target_lines
    assert all("opencv" in line and "torch" in line and "met" in line for line in target_lines), target_lines


@pytest.mark.parametrize(
    ("photo", "expected_faces"),
    [
        ("obama.jpg", 1),  # one frontal face, filling much of the photo
        ("two_people.jpg", 2),  # two faces side by side
    ],
)
def test_detectors_agree_on_real_photos(photo: str, expected_faces: int) -> None:
    # given a real photo from ../shared/data
    image = people_image(photo)
    # when the benchmark runs on it alone
    outcome = run_detect_bench(installed_models_dir(), repeats=1, batch_sizes=(1,), frames={photo: image})
    # then every detector finds the same number of faces
    [row] = outcome.rows
    faces = {timing.contender: timing.faces for timing in row.timings}
    assert set(faces.values()) == {expected_faces}, f"{photo}: {faces}"
    assert (row.height, row.width) == image.shape[:2]


@pytest.mark.parametrize(
    ("options", "expected", "match"),
    [
        # no timed round: refused before any model is loaded
        ({"repeats": 0}, ValueError, "repeats must be"),
        # no batch size to time
        ({"batch_sizes": ()}, ValueError, "batch sizes"),
        # a batch of no frame
        ({"batch_sizes": (0, 1)}, ValueError, "batch sizes"),
        # more frames per batch than the detector settings allow
        ({"batch_sizes": (513,)}, ValueError, "batch sizes 1-512"),
        # nothing to run on
        ({"frames": {}}, ValueError, "frames is empty"),
        # valid options, but YuNet's file is not installed: the loader's error, naming the file
        ({"repeats": 1, "batch_sizes": (1,)}, ModelLoadError, "face_detection_yunet_2023mar.onnx is missing"),
    ],
    ids=["no-repeats", "no-batch-sizes", "zero-batch", "batch-too-large", "no-frames", "no-yunet-file"],
)
def test_bad_arguments_and_missing_models_are_refused(
    tmp_path: Path, options: dict[str, Any], expected: type[Exception], match: str
) -> None:
    # given an empty models directory
    # when the benchmark is asked to run, then it is refused with the reason
    with pytest.raises(expected, match=match):
        run_detect_bench(tmp_path / "models", **options)


def test_cli_without_the_model_files_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a models directory without YuNet
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VIGIL_MODELS_DIR", str(tmp_path / "empty"))
    json_path = tmp_path / "out" / "detect.json"
    # when the benchmark is run from the command line
    error = cli_error(capsys, "bench", "detect", "--repeats", "1", "--json", str(json_path))
    # then it fails with one line naming the missing file and the fix, and writes no report
    assert "face_detection_yunet_2023mar.onnx is missing; run `vigil models install-pack`" in error, error
    assert not json_path.exists() and not json_path.with_suffix(".md").exists()
