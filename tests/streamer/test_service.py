"""`vigil run` end to end: real processes, the embedded Redis, FFmpeg decoding and the models."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import PEOPLE, SHARED_DATA, require
from tests.test_cli import assert_one_line_error, run_vigil

pytestmark = [pytest.mark.redis, pytest.mark.slow]

HAMILTON = SHARED_DATA / "clips" / "hamilton.mp4"
ENROLLED = {
    "Lin-Manuel Miranda": "lin-manuel-miranda.png",
    "Barack Obama": "obama.jpg",
    "Joe Biden": "biden.jpg",
}


@pytest.fixture(scope="module")
def hamilton_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hamilton")


@pytest.fixture(scope="module")
def hamilton_events(hamilton_home: Path) -> list[dict[str, object]]:
    """The events of one run over hamilton.mp4 with three people enrolled."""
    home = hamilton_home
    clip = require(HAMILTON)
    for name, photo in ENROLLED.items():
        enrolled = run_vigil("enroll", name, str(require(PEOPLE / photo)), home=home)
        assert enrolled.returncode == 0, enrolled.stderr
    result = run_vigil("run", str(clip), "--as-fast-as-possible", "--json", "--metrics-port", "0", home=home)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_hamilton_names_miranda_and_obama_once_per_visit_and_never_biden(
    hamilton_events: list[dict[str, object]],
) -> None:
    recognized = Counter(str(e["name"]) for e in hamilton_events if e["type"] == "recognized")
    # Lin-Manuel Miranda is on stage for most of the clip; Obama is in the audience at the end.
    assert recognized["Lin-Manuel Miranda"] == 1, recognized
    assert recognized["Barack Obama"] == 1, recognized
    assert not any(e["name"] == "Joe Biden" for e in hamilton_events)
    obama = next(e for e in hamilton_events if e["type"] == "recognized" and e["name"] == "Barack Obama")
    # at 5 analysed frames per second, the last two seconds of the 9.2 s clip are frames 36-45
    assert int(str(obama["frame"])) >= 36


def test_every_track_ends_and_events_carry_the_decision_context(
    hamilton_events: list[dict[str, object]],
) -> None:
    started = {e["track_id"] for e in hamilton_events if e["type"] in ("recognized", "unknown")}
    ended = {e["track_id"] for e in hamilton_events if e["type"] == "track_ended"}
    assert started <= ended
    # one event per visit, not per frame: Miranda's track spans many frames but is announced once
    miranda_end = [
        e for e in hamilton_events if e["type"] == "track_ended" and e["name"] == "Lin-Manuel Miranda"
    ]
    assert max(int(str(e["track_frames"])) for e in miranda_end) >= 15
    for event in hamilton_events:
        assert event["embedder_version"] == "sface_2021dec"  # the default model
        assert "calibration" in str(event["calibration"])
        assert float(str(event["latency_ms"])) >= 0


def test_status_and_events_commands_show_the_finished_run(
    hamilton_home: Path, hamilton_events: list[dict[str, object]]
) -> None:
    status = run_vigil("status", "--json", home=hamilton_home)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["sources"]["hamilton"]["state"] == "finished"
    assert report["gallery_version"] >= 3  # three enrolments
    assert report["bus"] == {"waiting": 0, "pending": 0}
    # the stored events, filtered by person name, are the run's events for that person
    stored = run_vigil("events", "--json", "--identity", "Barack Obama", home=hamilton_home)
    kept = [json.loads(line) for line in stored.stdout.splitlines()]
    assert kept == [e for e in hamilton_events if e["name"] == "Barack Obama"]


def test_events_are_kept_and_filtered_by_vigil_events(tmp_path: Path) -> None:
    # an empty installation has no events, and says nothing went wrong
    result = run_vigil("events", "--json", home=tmp_path)
    assert result.returncode == 0 and result.stdout == "", result.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["run"], "no cameras"),
        (["run", "/nonexistent/clip.mp4"], "does not exist"),
        (["events", "--since", "yesterday-ish"], "--since"),
        (["run", "--config", "/nonexistent/vigil.yaml"], "cannot read config file"),
    ],
    ids=["no-sources", "missing-file", "bad-since", "config-after-run"],
)
def test_service_errors_are_one_line(tmp_path: Path, args: list[str], fragment: str) -> None:
    assert_one_line_error(run_vigil(*args, home=tmp_path), fragment)


def test_a_file_that_is_not_a_video_fails_its_camera_with_a_clear_message(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("not a video", encoding="utf-8")
    result = run_vigil("run", str(bogus), "--as-fast-as-possible", "--metrics-port", "0", home=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "camera notes failed" in result.stderr
