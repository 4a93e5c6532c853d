"""``vigil bench stream``: both sides on real frames of hamilton.mp4, the report, the command's errors.

The slice used (frames 120 to 135) is where Lin-Manuel Miranda faces the camera on stage: the
recipe matches him on every frame from 120 to 210 (see ``test_bench_recipe.py``), and so must
Vigil. The service's latency run takes the whole clip in real time, so it is left to the
benchmark itself; its arithmetic is tested here on built stream entries.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import pytest

from indexer.calibration import Thresholds, read_calibration, shipped_calibration_path
from streamer.analysis import FrameResult
from streamer.bench_setup import temporary_home, write_reports
from streamer.bench_stream import (
    MUST_FIND,
    EventLatency,
    Percentiles,
    ServiceLatency,
    SideResult,
    StreamBenchResult,
    frame_latencies,
    interleaved_slices,
    percentiles,
    result_timings,
    run_stream_bench,
)
from tests.conftest import PEOPLE, SHARED_DATA, is_alive, require
from vigil.cli.bench import add_stream_bench
from vigil.config import IndexerConfig, Settings
from vigil.errors import DatasetError

CLIP = SHARED_DATA / "clips" / "hamilton.mp4"
STAGE_FRAMES = (120, 136)
"""Frames [start, stop) on which Lin-Manuel Miranda faces the camera on stage."""
MIRANDA = "Lin-Manuel Miranda"


def make_side(label: str, fps: float, names: dict[str, int], frames: int = 100) -> SideResult:
    """A contender's result that ran at ``fps`` frames/s, on 2 threads' worth of CPU."""
    seconds = frames / fps
    return SideResult(
        frames=frames,
        seconds=seconds,
        cpu_seconds=2 * seconds,
        names=names,
        faces=frames + 5,
        unknown_faces=5,
        faces_embedded=frames + 5,
        label=label,
    )


def make_result(
    recipe: SideResult, vigil: SideResult, latency: ServiceLatency | None = None
) -> StreamBenchResult:
    return StreamBenchResult(
        clip="hamilton.mp4",
        frame_size=(640, 360),
        recipe=recipe,
        vigil=vigil,
        rounds=5,
        batch_size=8,
        workers=2,
        torch_threads=1,
        rule=Thresholds(0.9195, 0.0, "calibration lfw-open-set"),
        embedder_version="dlib_resnet_v1+flip",
        detector="mtcnn",
        min_face_size_px=20,
        cpu_model="AMD EPYC",
        cpu_count=2,
        load_average=(0.1, 1.9),
        other_cpu_s=3.0,
        latency=latency,
    )


def make_latency() -> ServiceLatency:
    return ServiceLatency(
        camera_fps=5.0,
        workers=1,
        wall_s=21.5,
        frames_analysed=46,
        startup_s=4.2,
        frames=Percentiles(46, 180.0, 260.0),
        frame_ms=(180.0,) * 45 + (260.0,),
        events=Percentiles(2, 500.0, 3900.0),
        event_list=(
            EventLatency("recognized", MIRANDA, 3, 3900.0),
            EventLatency("recognized", MUST_FIND, 40, 500.0),
        ),
    )


def result_entry(
    stream_id: str, read_at: float, end_of_stream: bool = False
) -> tuple[bytes, dict[bytes, bytes]]:
    """A results-stream entry as redis-py returns it: the worker wrote it at ``stream_id``'s millisecond."""
    fields = FrameResult(
        camera="hamilton",
        number=0,
        captured_at=read_at,
        faces=[],
        end_of_stream=end_of_stream,
        read_at=read_at,
    ).to_fields()
    return stream_id.encode(), {key.encode(): value.encode() for key, value in fields.items()}


@pytest.fixture(scope="module")
def stage_run(settings: Settings) -> StreamBenchResult:
    """Both sides on 16 stage frames in 2 rounds, without the service (about 30 s in all)."""
    pytest.importorskip("dlib", reason="the recipe needs dlib (the reference extra)")
    require(CLIP)
    require(PEOPLE)
    return run_stream_bench(CLIP, PEOPLE, settings, rounds=2, measure_latency=False, frame_range=STAGE_FRAMES)


@pytest.mark.slow
@pytest.mark.redis
def test_both_sides_name_lin_manuel_on_stage_and_nobody_else(stage_run: StreamBenchResult) -> None:
    # given 16 full-resolution frames of Lin-Manuel Miranda on stage, analysed by both sides
    recipe, vigil = stage_run.recipe, stage_run.vigil
    # then both analysed every frame, in two interleaved rounds of whole batches
    assert recipe.frames == vigil.frames == 16 and stage_run.rounds == 2, stage_run
    assert stage_run.frame_size == (640, 360)
    # and Vigil names him on (nearly) every frame, like the recipe, and nobody else
    assert vigil.names[MIRANDA] >= 14, f"Vigil named {vigil.names} of 16 frames"
    assert recipe.names[MIRANDA] >= 14, f"the recipe named {recipe.names} of 16 frames"
    others = {name: frames for name, frames in vigil.names.items() if name != MIRANDA}
    assert set(others) == {"Barack Obama", "Joe Biden"} and not any(others.values()), f"false names: {others}"
    # and the timings are real: wall and CPU time spent, torch's threads named
    assert vigil.seconds > 0 and vigil.cpu_seconds > 0 and recipe.seconds > 0, stage_run
    assert "thread" in vigil.label and stage_run.workers >= 1 and stage_run.torch_threads >= 1
    # and the decision rule is the calibrated default, with no calibration of the caller's home
    rule = stage_run.rule
    shipped = read_calibration(shipped_calibration_path(stage_run.embedder_version))
    expected = shipped.for_target(IndexerConfig().target_fpir).rule_for(3)  # three people enrolled
    assert (rule.threshold, rule.margin) == expected and "calibration" in rule.source, rule


@pytest.mark.slow
@pytest.mark.redis
def test_a_real_run_writes_json_and_markdown(stage_run: StreamBenchResult, tmp_path: Path) -> None:
    # when the stage run's reports are written
    markdown_path = write_reports(stage_run, tmp_path / "stream.json")
    # then the JSON holds both sides and the verdict, and the Markdown the table
    report = json.loads((tmp_path / "stream.json").read_text(encoding="utf-8"))
    assert report["vigil"]["names"][MIRANDA] == stage_run.vigil.names[MIRANDA], report["vigil"]
    assert report["speedup"] == pytest.approx(stage_run.speedup) and report["latency"] is None
    assert "frames/s" in markdown_path.read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.redis
def test_a_real_run_measures_what_each_age_and_gender_model_costs(stage_run: StreamBenchResult) -> None:
    # given the stage run (Lin-Manuel Miranda on every frame), with no fine-tuned copy promoted
    cost = stage_run.attribute_cost
    assert cost is not None and cost.faces >= 16, cost
    # then the worker's chip and the tracker's passes were timed on real faces
    assert cost.chip_ms_per_face > 0 and 2_000 < cost.chip_bytes_per_face < 20_000, cost
    assert cost.head_ms_per_track is not None and cost.head_ms_per_track > 0, cost
    # the copy runs the frozen blocks too, on 3 chips and their mirrors: dearer than the head
    assert cost.tail_ms_per_track > cost.head_ms_per_track and cost.tail.startswith("untrained"), cost
    markdown = stage_run.to_markdown()
    assert "### Age and gender: cost per model" in markdown and "`fine_tuned`" in markdown


@pytest.mark.redis
def test_temporary_home_leaves_nothing_behind(settings: Settings) -> None:
    # given a temporary home, used
    with temporary_home(settings) as (moved, client):
        home, server_pid = moved.home, int(getattr(client, "pid", 0))
        client.set("vigil:bench:probe", b"1")
        # then it is not the caller's home, and uses the embedded server there
        assert home != settings.home and moved.redis.url is None, moved
        assert (home / "redis").is_dir()
    # then the folder is gone and the server stopped
    assert not home.exists(), f"{home} was left behind"
    assert server_pid and not is_alive(server_pid), f"redis-server {server_pid} still runs"


@pytest.mark.parametrize(
    ("recipe_names", "vigil_names", "recipe_fps", "vigil_fps", "met", "missed"),
    [
        # faster by 5x, the recipe's person and Obama found: met
        ({MIRANDA: 139, MUST_FIND: 0}, {MIRANDA: 200, MUST_FIND: 30}, 2.0, 10.0, True, set()),
        # just under 5x: not met, though everyone is found
        ({MIRANDA: 139}, {MIRANDA: 200, MUST_FIND: 30}, 2.0, 9.9, False, set()),
        # fast, but Obama never named
        ({MIRANDA: 139}, {MIRANDA: 200, MUST_FIND: 0}, 2.0, 10.0, False, {MUST_FIND}),
        # fast, Obama named, but someone the recipe found is missed
        ({MIRANDA: 139, "Joe Biden": 3}, {MIRANDA: 200, MUST_FIND: 30}, 2.0, 10.0, False, {"Joe Biden"}),
    ],
    ids=["met", "too-slow", "no-obama", "misses-recipe-person"],
)
def test_target_needs_speed_and_the_recipes_people_plus_obama(
    recipe_names: dict[str, int],
    vigil_names: dict[str, int],
    recipe_fps: float,
    vigil_fps: float,
    met: bool,
    missed: set[str],
) -> None:
    # given two sides' results
    result = make_result(
        make_side("recipe", recipe_fps, recipe_names), make_side("vigil", vigil_fps, vigil_names)
    )
    # then the verdict and who was missed follow the issue's target
    assert result.target_met is met, f"speed-up {result.speedup:.2f}, missed {result.missed}"
    assert result.missed == missed
    assert result.speedup == pytest.approx(vigil_fps / recipe_fps)


def test_report_shows_both_sides_the_target_and_latency(tmp_path: Path) -> None:
    # given a result with a service run
    result = make_result(
        make_side("face_recognition recipe", 2.0, {MIRANDA: 139, MUST_FIND: 0}),
        make_side("Vigil worker path", 8.0, {MIRANDA: 200, MUST_FIND: 30}),
        make_latency(),
    )
    # when its reports are written
    markdown = write_reports(result, tmp_path / "out" / "stream.json").read_text(encoding="utf-8")
    report = json.loads((tmp_path / "out" / "stream.json").read_text(encoding="utf-8"))
    # then the JSON has the figures the issue asks for, per side and for the run
    for side in ("recipe", "vigil"):
        expected = {"fps", "seconds", "cpu_seconds", "cpu_seconds_per_frame", "names", "unknown_faces"}
        assert expected <= set(report[side]), report[side]
    # (4x is short of the 5x target)
    assert report["target"]["met"] is False and report["speedup"] == pytest.approx(4.0)
    assert report["cameras_per_cpu"]["vigil"] == pytest.approx(8.0 / 5.0), report["cameras_per_cpu"]
    assert report["latency"]["frames"]["p99_ms"] == 260.0, report["latency"]
    assert (report["workers"], report["torch_threads"], report["cpu_model"]) == (2, 1, "AMD EPYC")
    assert report["rule"] == {"threshold": 0.9195, "margin": 0.0, "source": "calibration lfw-open-set"}
    # and the Markdown shows them side by side, with the verdict and the latency table
    assert "| **frames/s** | 2.00 | **8.00** |" in markdown, markdown
    assert "| CPU s per frame | 1.000 | 0.250 |" in markdown, markdown
    assert "| frames naming Barack Obama | 0 | 30 |" in markdown, markdown
    assert "| cameras at 5 fps | 0.40 | 1.60 |" in markdown, markdown
    assert "Speed-up **4.00×**" in markdown and "**not met**" in markdown, markdown
    assert "every analysed frame | 46 | 180 | 260 |" in markdown, markdown
    assert "recognized Barack Obama (frame 40, 500 ms)" in markdown, markdown


def test_frame_latency_runs_from_read_to_the_result_entrys_time() -> None:
    # given results written at 900 ms, 950 ms and 1,100 ms after t = 1,000 s, for frames read
    # at 0, 200 and 1,000 ms, and an end-of-stream marker
    entries = [
        result_entry("1000900-0", 1000.0),
        result_entry("1000950-0", 1000.2),
        result_entry("1001100-0", 1001.0),
        result_entry("1001200-0", 1001.1, end_of_stream=True),
    ]
    # when the latencies are taken
    timings = result_timings(entries)
    # then every frame counts once, the end marker not at all
    assert frame_latencies(timings) == pytest.approx([900.0, 750.0, 100.0]), timings
    assert timings[0] == (1000.0, 1000900), timings


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # numpy's linear interpolation: p99 of 1..100 lies between 99 and 100
        ([float(value) for value in range(1, 101)], Percentiles(100, 50.5, 99.0)),
        # one value is every percentile
        ([42.0], Percentiles(1, 42.0, 42.0)),
        # nothing measured
        ([], Percentiles(0, None, None)),
    ],
    ids=["hundred", "one", "none"],
)
def test_percentiles(values: list[float], expected: Percentiles) -> None:
    assert percentiles(values) == expected


@pytest.mark.parametrize(
    ("count", "rounds", "batch_size", "expected_sizes"),
    [
        # hamilton.mp4: 35 batches of 8 in 5 rounds of 7 batches, the last one short
        (275, 5, 8, [56, 56, 56, 56, 51]),
        # fewer batches than rounds: one round per batch
        (16, 5, 8, [8, 8]),
        # one round: everything
        (30, 1, 8, [30]),
    ],
    ids=["hamilton", "few-frames", "one-round"],
)
def test_interleaved_slices_cover_every_frame_in_whole_batches(
    count: int, rounds: int, batch_size: int, expected_sizes: list[int]
) -> None:
    slices = interleaved_slices(count, rounds, batch_size)
    assert [s.stop - s.start for s in slices] == expected_sizes
    assert slices[0].start == 0 and slices[-1].stop == count
    assert all(a.stop == b.start for a, b in itertools.pairwise(slices)), slices


@pytest.mark.parametrize(
    ("arguments", "fragment", "expected_error"),
    [
        # a clip that does not exist
        (["--clip", "/nonexistent/hamilton.mp4"], "--clip", DatasetError),
        # a people folder without the three photos
        (["--people", "/nonexistent/people"], "lin-manuel-miranda.png, obama.jpg, biden.jpg", DatasetError),
    ],
    ids=["missing-clip", "missing-photos"],
)
def test_missing_data_is_a_one_line_dataset_error(
    arguments: list[str], fragment: str, expected_error: type[Exception], tmp_path: Path, settings: Settings
) -> None:
    # given `vigil bench stream` with data that is not there
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")  # only its existence is checked before the run
    parser = argparse.ArgumentParser(prog="vigil bench")
    add_stream_bench(parser.add_subparsers())
    args = parser.parse_args(["stream", "--clip", str(clip), "--people", str(PEOPLE), *arguments])
    args.json = tmp_path / "reports" / "stream.json"
    # when it runs, then it stops at once with one line that says what to pass
    with pytest.raises(expected_error) as caught:
        args.handler(args, settings)
    message = str(caught.value)
    assert fragment in message and "\n" not in message, message
    assert not args.json.parent.exists(), "nothing may be written before the data is checked"


def test_the_command_has_the_issues_defaults() -> None:
    parser = argparse.ArgumentParser(prog="vigil bench")
    add_stream_bench(parser.add_subparsers())
    args = parser.parse_args(["stream"])
    assert args.clip == Path("../shared/data/clips/hamilton.mp4")
    assert args.people == Path("../shared/data/people/face_recognition")
    assert args.json == Path("bench-results/stream.json") and args.skip_latency is False
