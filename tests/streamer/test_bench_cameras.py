"""``vigil bench cameras``: a real worker on concurrent copies of hamilton.mp4, on the CPU here.

The figures the issue asks for (8 concurrent 720p streams per GPU) come from running the
command on a GPU machine; here the same code runs on the CPU at the clip's own size, with
2 cameras and 2 timed batches, to check the mechanics and the report.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from streamer.bench_cameras import (
    WORKER_STAGES,
    CamerasBenchResult,
    run_cameras_bench,
    scale_frames,
    stage_shares,
)
from streamer.bench_setup import write_reports
from tests.conftest import PEOPLE, SHARED_DATA, require
from vigil.cli.bench import add_cameras_bench
from vigil.config import Settings
from vigil.errors import DatasetError

CLIP = SHARED_DATA / "clips" / "hamilton.mp4"


@pytest.fixture(scope="module")
def two_cameras(settings: Settings) -> CamerasBenchResult:
    """Two cameras at 640×360, two timed batches after the warm-up ones."""
    require(CLIP)
    require(PEOPLE)
    return run_cameras_bench(CLIP, PEOPLE, settings, cameras=2, height=360, ticks=2)


@pytest.mark.slow
@pytest.mark.redis
def test_a_real_worker_analyses_one_frame_per_camera_per_batch(two_cameras: CamerasBenchResult) -> None:
    # given 2 cameras and 2 timed batches on the real bus
    result = two_cameras
    # then 4 frames of the clip's size were analysed in measurable time, on the CPU here
    assert (result.cameras, result.ticks, result.frames) == (2, 2, 4), result
    assert result.frame_size == (640, 360)
    assert result.seconds > 0 and result.cpu_seconds > 0 and result.fps > 0
    assert result.device == "cpu" and result.gpu_peak_mib is None
    # and faces were found and the enrolled people counted (camera 0 starts on the empty stage,
    # camera 1 half-way, on Lin-Manuel Miranda)
    assert result.faces > 0, result
    assert set(result.names) == {"Lin-Manuel Miranda", "Barack Obama", "Joe Biden"}
    assert result.names["Lin-Manuel Miranda"] >= 1, result.names
    # and every worker stage took time, the models the most, the shares adding up to the whole
    by_stage = {stage.stage: stage for stage in result.stages}
    assert set(by_stage) == {"bus", *WORKER_STAGES}
    assert all(by_stage[stage].seconds > 0 for stage in WORKER_STAGES), by_stage
    # (MTCNN's detection or SFace's embedding, which costs the most per face on a CPU)
    assert max(by_stage.values(), key=lambda stage: stage.seconds).stage in {"detect", "embed"}, by_stage
    assert sum(stage.share for stage in result.stages) == pytest.approx(1.0, abs=0.01)


@pytest.mark.slow
@pytest.mark.redis
def test_reports_hold_the_figures(two_cameras: CamerasBenchResult, tmp_path: Path) -> None:
    # when the reports are written
    markdown_path = write_reports(two_cameras, tmp_path / "cameras.json")
    # then the JSON carries the throughput and the stages, and the Markdown the stage table
    report = json.loads((tmp_path / "cameras.json").read_text(encoding="utf-8"))
    assert report["fps"] == pytest.approx(two_cameras.fps) and report["cameras"] == 2
    assert [stage["stage"] for stage in report["stages"]] == ["bus", *WORKER_STAGES]
    markdown = markdown_path.read_text(encoding="utf-8")
    assert "| detect |" in markdown and "frames/s" in markdown and "2 concurrent 640×360" in markdown


def test_frames_are_scaled_to_the_height_with_their_aspect() -> None:
    # given two 640×360 frames
    frames = [np.full((360, 640, 3), value, np.uint8) for value in (10, 200)]
    # when scaled to 720p and to 180p
    large, small = scale_frames(frames, 720), scale_frames(frames, 180)
    # then the aspect holds and the pixels survive
    assert [frame.shape for frame in large] == [(720, 1280, 3)] * 2
    assert [frame.shape for frame in small] == [(180, 320, 3)] * 2
    assert int(large[1][360, 640, 0]) == 200 and int(small[0][90, 160, 0]) == 10
    # and the clip's own height returns the frames unchanged
    assert scale_frames(frames, 360)[0] is frames[0]


def test_stage_shares_put_the_unmeasured_rest_on_the_bus() -> None:
    # given 10 s of steps over 5 batches, 6 s of it in the worker's stages
    stages = stage_shares({"detect": 4.0, "embed": 1.5, "search": 0.25, "publish": 0.25}, 10.0, 5)
    by_stage = {stage.stage: stage for stage in stages}
    # then the bus gets the other 4 s, and each stage its time per batch and share
    assert by_stage["bus"].seconds == pytest.approx(4.0) and by_stage["bus"].share == pytest.approx(0.4)
    assert by_stage["detect"].ms_per_batch == pytest.approx(800.0)
    assert sum(stage.share for stage in stages) == pytest.approx(1.0)


@pytest.mark.parametrize("field", ["cameras", "height", "ticks"])
def test_counts_below_one_are_refused(field: str, settings: Settings) -> None:
    with pytest.raises(ValueError, match=field):
        run_cameras_bench(CLIP, PEOPLE, settings, **{field: 0})


def test_a_missing_clip_says_which_option_to_pass(settings: Settings, tmp_path: Path) -> None:
    # given the command's arguments with a clip that does not exist
    parser = argparse.ArgumentParser()
    add_cameras_bench(parser.add_subparsers())
    args = parser.parse_args(
        ["cameras", "--clip", str(tmp_path / "none.mp4"), "--json", str(tmp_path / "c.json")]
    )
    # then it fails before any work, naming --clip
    with pytest.raises(DatasetError, match="--clip"):
        args.handler(args, settings)
