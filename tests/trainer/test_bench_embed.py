"""`vigil bench embed`: our dlib ResNet and SFace timed beside dlib's and OpenCV's own, on real chips."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tests.models.onnx_models import installed_models_dir
from tests.trainer.conftest import cli_error
from trainer.bench_embed import (
    DLIB_BATCH,
    DLIB_SINGLE,
    OPENCV_SFACE,
    OURS,
    OURS_FLIP,
    SFACE_RUNTIMES,
    EmbedBenchResult,
    make_bench_chips,
    make_sface_chips,
    run_embed_bench,
    sface_backend,
    time_round_robin,
)
from trainer.report import write_json
from vigil.config.embedder import EmbedderConfig
from vigil.errors import ModelLoadError
from vigil.models.sface import SFaceEmbedder
from vigil.typing import ImageRGB

CHIPS = 4  # both originals (astronaut, Grace Hopper), then one jittered copy of each
BATCH_SIZES = (1, 2)


@pytest.fixture(scope="module")
def dlib_chips() -> ImageRGB:
    pytest.importorskip("dlib", reason="the embedding bench cuts its chips with dlib (the reference extra)")
    return make_bench_chips(count=CHIPS)


@pytest.fixture(scope="module")
def sface_chips() -> ImageRGB:
    return make_sface_chips(installed_models_dir(), count=CHIPS)


@pytest.fixture(scope="module")
def result(dlib_chips: ImageRGB, sface_chips: ImageRGB) -> EmbedBenchResult:
    """One round of every contender on the four chips, at batches 1 and 2."""
    return run_embed_bench(
        dlib_chips,
        batch_sizes=BATCH_SIZES,
        repeats=1,
        sface_chips=sface_chips,
        models_dir=installed_models_dir(),
    )


def _unit(embeddings: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    unit: npt.NDArray[np.float32] = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    return unit


def test_sface_chips_are_aligned_faces_of_the_same_people(sface_chips: ImageRGB) -> None:
    # given the SFace chips: astronaut, Grace Hopper, then a jittered copy of each
    assert sface_chips.shape == (CHIPS, 112, 112, 3) and sface_chips.dtype == np.uint8, sface_chips.shape
    # when OpenCV-runtime SFace embeds them
    config = EmbedderConfig(backend="sface", runtime="opencv", device="cpu", flip_average=False)
    unit = _unit(SFaceEmbedder(config, installed_models_dir()).embed(sface_chips))
    cosine = unit @ unit.T
    # then each copy matches its original and the two people stay apart (chips are real, aligned faces)
    assert cosine[0, 2] > 0.9 and cosine[1, 3] > 0.9, f"same person: {cosine[0, 2]:.3f}, {cosine[1, 3]:.3f}"
    assert cosine[0, 1] < 0.4, f"different people: {cosine[0, 1]:.3f}"


def test_sface_chips_get_the_same_jitter_as_dlib_chips(dlib_chips: ImageRGB, sface_chips: ImageRGB) -> None:
    # given both chip sets from the same seed
    # when the brightness of each copy is compared with its original's
    def brightness_ratios(chips: ImageRGB) -> npt.NDArray[np.float64]:
        means: npt.NDArray[np.float64] = chips.reshape(len(chips), -1).mean(axis=1)
        return means[2:] / means[:2]

    # then both sets were scaled alike (the shift moves the mean a little, hence the tolerance)
    np.testing.assert_allclose(brightness_ratios(sface_chips), brightness_ratios(dlib_chips), atol=0.02)
    # and the same seed gives the same chips again
    np.testing.assert_array_equal(make_sface_chips(installed_models_dir(), count=CHIPS), sface_chips)


def test_every_contender_has_a_row_with_its_reference(result: EmbedBenchResult) -> None:
    # given one round at batches 1 and 2
    rows = {(row.backend, row.batch_size): row for row in result.rows}
    # then dlib ResNet (ours ± flip, dlib's) and SFace (two runtimes × flip, OpenCV's) are there
    expected = {(OURS, 1), (OURS_FLIP, 1), (DLIB_SINGLE, 1), (OURS, 2), (OURS_FLIP, 2), (DLIB_BATCH, 2)}
    expected |= {(OPENCV_SFACE, 1)}
    expected |= {
        (sface_backend(runtime, flip), batch)
        for runtime in SFACE_RUNTIMES
        for flip in (False, True)
        for batch in BATCH_SIZES
    }
    assert set(rows) == expected, sorted(set(rows) ^ expected)
    # and dlib ResNet rows come first, then SFace rows, each by batch size
    models = [row.model for row in result.rows]
    assert models == sorted(models, key=("dlib_resnet", "sface").index), models
    for (backend, batch), row in rows.items():
        assert 0 < row.faces_per_s < 1e6, f"{backend} at batch {batch}: {row.faces_per_s}"
        if backend in (DLIB_SINGLE, DLIB_BATCH, OPENCV_SFACE):
            # the references themselves have no ratio
            assert row.reference is None and row.ratio_vs_reference is None, row
            continue
        # each of ours is compared with its reference: dlib at the same batch size, or OpenCV's one-chip API
        reference_key = (row.reference, batch if row.model == "dlib_resnet" else 1)
        assert reference_key in rows, f"{backend}: reference {row.reference}"
        expected_ratio = row.faces_per_s / rows[reference_key].faces_per_s
        assert row.ratio_vs_reference == pytest.approx(expected_ratio), row


def test_sface_matches_opencv_on_both_runtimes(result: EmbedBenchResult) -> None:
    # given our SFace on each runtime against cv2.FaceRecognizerSF.feature on the same chips
    parity = {entry.runtime: entry for entry in result.sface_parity}
    # then both runtimes are reported and point the same way as OpenCV's embeddings
    assert set(parity) == set(SFACE_RUNTIMES), parity
    for runtime, entry in parity.items():
        assert entry.min_cosine > 0.999, f"{runtime}: min cosine {entry.min_cosine:.6f}"
        assert entry.min_cosine <= entry.mean_cosine <= 1 + 1e-9, entry
    # and ours stays close to dlib's descriptors too
    assert result.max_abs_diff_vs_dlib is not None and result.max_abs_diff_vs_dlib < 1e-4


def test_reports_carry_rows_and_parity(result: EmbedBenchResult, tmp_path: Path) -> None:
    # when the result is written by the report writer and read back
    path = tmp_path / "embed.json"
    write_json(path, result.to_dict())
    report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    # then the JSON holds every row, the parity per runtime and the versions
    assert len(report["rows"]) == len(result.rows) and report["num_chips"] == CHIPS
    assert {row["model"] for row in report["rows"]} == {"dlib_resnet", "sface"}
    assert all(math.isfinite(row["faces_per_s"]) for row in report["rows"]), report["rows"]
    assert [entry["runtime"] for entry in report["sface_parity_vs_opencv"]] == list(SFACE_RUNTIMES)
    assert report["opencv_version"] and report["dlib_version"], report
    # and the Markdown has one table row per configuration and a parity line per runtime
    markdown = result.to_markdown()
    table_rows = [
        line for line in markdown.splitlines() if line.startswith(("| vigil", "| dlib", "| opencv"))
    ]
    assert len(table_rows) == len(result.rows), table_rows
    for runtime in SFACE_RUNTIMES:
        assert f"SFace ({runtime} runtime) vs OpenCV FaceRecognizerSF.feature" in markdown, markdown


@pytest.mark.parametrize(
    ("settle_runs", "expected_calls"),
    [
        (0, 1 + 3),  # the warm-up, then one timed call per round
        (1, 1 + 3 * 2),  # the warm-up, then per round one untimed call right before the timed one
    ],
)
def test_round_robin_times_each_contender_once_per_round(settle_runs: int, expected_calls: int) -> None:
    # given two contenders that log their calls
    calls: list[str] = []
    contenders: dict[tuple[str, int], Callable[[], object]] = {
        (name, 1): functools.partial(calls.append, name) for name in ("first", "second")
    }
    # when they are timed in 3 rounds
    timings = time_round_robin(contenders, 3, settle_runs=settle_runs)
    # then each has 3 durations, was called the expected number of times, and the rounds interleave
    assert {key: len(seconds) for key, seconds in timings.items()} == {("first", 1): 3, ("second", 1): 3}
    assert calls.count("first") == calls.count("second") == expected_calls, calls
    round_calls = ["first"] * (settle_runs + 1) + ["second"] * (settle_runs + 1)
    assert calls == ["first", "second"] + round_calls * 3, calls


@pytest.mark.parametrize(
    ("chips_px", "sface_px", "options", "expected", "match"),
    [
        # SFace chips cut at dlib's size: refused before any model is loaded
        (150, 150, {}, ValueError, r"sface_chips as a non-empty \(N, 112, 112, 3\)"),
        # dlib chips at SFace's size
        (112, 112, {}, ValueError, r"chips as a non-empty \(N, 150, 150, 3\)"),
        # SFace chips without the folder their model is in
        (150, 112, {"models_dir": None}, ValueError, "sface_chips needs models_dir"),
        # no timed round
        (150, 112, {"repeats": 0}, ValueError, "repeats and batch sizes must be at least 1"),
        # a batch of no chip
        (150, 112, {"batch_sizes": (0,)}, ValueError, "repeats and batch sizes must be at least 1"),
        # valid arguments, but SFace's file is not installed: the loader's error, naming the file
        (150, 112, {}, ModelLoadError, "face_recognition_sface_2021dec.onnx is missing"),
    ],
    ids=["sface-chips-150", "dlib-chips-112", "no-models-dir", "no-repeats", "zero-batch", "no-sface-file"],
)
def test_bad_arguments_and_missing_models_are_refused(
    tmp_path: Path,
    chips_px: int,
    sface_px: int,
    options: dict[str, Any],
    expected: type[Exception],
    match: str,
) -> None:
    # given blank chips of the given sizes and an empty models directory
    arguments: dict[str, Any] = {
        "sface_chips": np.zeros((2, sface_px, sface_px, 3), np.uint8),
        "models_dir": tmp_path / "models",
        "repeats": 1,
        "batch_sizes": (1,),
        "include_dlib": False,
    }
    arguments.update(options)
    # when the benchmark is asked to run, then it is refused with the reason
    with pytest.raises(expected, match=match):
        run_embed_bench(np.zeros((2, chips_px, chips_px, 3), np.uint8), **arguments)


def test_cli_without_the_model_files_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("dlib", reason="the embedding bench cuts its chips with dlib (the reference extra)")
    # given a models directory without YuNet and SFace
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VIGIL_MODELS_DIR", str(tmp_path / "empty"))
    json_path = tmp_path / "out" / "embed.json"
    # when the benchmark is run from the command line
    error = cli_error(capsys, "bench", "embed", "--repeats", "1", "--json", str(json_path))
    # then one line names the first missing file (YuNet cuts the SFace chips), and no report is written
    assert "face_detection_yunet_2023mar.onnx is missing; run `vigil models install-pack`" in error, error
    assert not json_path.exists() and not json_path.with_suffix(".md").exists()
