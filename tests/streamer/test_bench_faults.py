"""``vigil bench faults``: the real service on hamilton.mp4 (two cameras) under kills and poison.

The short profile kills the tracker, a worker and the embedded Redis server and poisons the
results stream, in real processes on a real Redis: no event may be lost or doubled, and the
person enrolled meanwhile must stay in the gallery. The live profile kills and restarts a
real RTSP camera's server beside a file camera. The comparison with the baseline is checked
on built passes.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from streamer.bench_faults import DEFAULT_LFW_DIR, run_fault_bench
from streamer.bench_faults_report import FaultBenchResult, FaultKind, LiveCameraOutcome, PassRun, Visit
from streamer.bench_setup import write_reports
from tests.conftest import PEOPLE, SHARED_DATA, require
from vigil.config import Settings

CLIP = SHARED_DATA / "clips" / "hamilton.mp4"
LFW_PEOPLE = SHARED_DATA / "lfw" / DEFAULT_LFW_DIR.name
BASELINE = ["door:Barack Obama", "door:unknown", "hall:Barack Obama"]


def make_pass(labels: list[str], ended: int | None = None, repeats: int = 0) -> PassRun:
    """A pass that delivered one visit per ``camera:name`` label; the first ``ended`` tracks ended."""
    visits = [
        Visit(
            label.split(":")[0],
            "unknown" if label.endswith(":unknown") else "recognized",
            label.split(":")[1],
            f"track-{index}",
        )
        for index, label in enumerate(labels)
    ]
    ended_ids = {visit.track_id for visit in visits[: len(visits) if ended is None else ended]}
    ids = Counter({f"{visit.track_id}/announce": 1 for visit in visits})
    ids.update({f"{track}/end": 1 for track in ended_ids})
    if repeats:
        ids["track-0/announce"] += repeats
    return PassRun(1, 10.0, 5.0, visits, ended_ids, ids, restarts=0)


@pytest.mark.parametrize(
    ("labels", "ended", "repeats", "missing", "replayed", "unended", "duplicates"),
    [
        (BASELINE, None, 0, [], 0, [], 0),  # as the baseline: nothing lost
        (BASELINE[:2], None, 0, ["hall:Barack Obama"], 0, [], 0),  # a visit never announced
        ([*BASELINE, "door:unknown"], None, 0, [], 1, [], 0),  # a reader replayed its file: extra visit
        (BASELINE, 2, 0, [], 0, ["track-2"], 0),  # announced, never ended
        (BASELINE, None, 1, [], 0, [], 1),  # one event id delivered twice
    ],
)
def test_pass_is_compared_with_the_baseline(
    labels: list[str],
    ended: int | None,
    repeats: int,
    missing: list[str],
    replayed: int,
    unended: list[str],
    duplicates: int,
) -> None:
    # given a faulted pass's visits; when compared with the baseline
    outcome = make_pass(labels, ended, repeats).compare(BASELINE)
    # then each loss, replay and duplicate is counted where it belongs
    assert outcome.missing_visits == missing, "baseline visits without an announcement"
    assert outcome.replayed_visits == replayed, "visits beyond the baseline's"
    assert outcome.unended_tracks == unended, "announced tracks that never ended"
    assert outcome.duplicate_event_ids == duplicates, "event ids delivered more than once"


@pytest.mark.redis
@pytest.mark.slow
def test_short_fault_run_loses_and_doubles_nothing(settings: Settings, tmp_path: Path) -> None:
    # given the clip under two camera names, the people enrolled, and the short fault profile
    require(CLIP)
    require(PEOPLE)
    require(LFW_PEOPLE)
    # when the service runs once cleanly and then under tracker, worker and Redis kills and poison
    result = run_fault_bench([CLIP, CLIP], PEOPLE, LFW_PEOPLE, settings, seed=0, profile="short")
    markdown_path = write_reports(result, tmp_path / "faults.json")
    # then every fault was injected, nothing was lost or doubled, and the reports are written
    assert {fault.kind for fault in result.faults} == {
        FaultKind.TRACKER_KILL,
        FaultKind.WORKER_KILL,
        FaultKind.POISON_RESULTS,
        FaultKind.REDIS_KILL,
    }, f"faults injected: {result.faults_by_kind()}"
    assert result.baseline_visits, "the clean pass must see visits to compare against"
    assert result.events_lost == 0, (
        f"events lost: {[(p.missing_visits, p.unended_tracks) for p in result.passes]}"
    )
    assert result.duplicate_events == 0, "event ids delivered twice"
    assert result.gallery_writes >= 1 and not result.gallery_writes_lost, "enrolments lost"
    report = json.loads((tmp_path / "faults.json").read_text())
    assert report["events_lost"] == 0 and report["duplicate_events"] == 0, "the JSON report's figures"
    assert "lost 0 (target 0)" in markdown_path.read_text(), "the Markdown report states the target"


def make_live(missing: list[str], unended: list[str], duplicates: int) -> LiveCameraOutcome:
    """A live-camera pass with 2 announcements on the live camera and 2 baseline visits beside it."""
    return LiveCameraOutcome(
        camera="127.0.0.1-8554",
        other_camera="door",
        down_s=3.0,
        frames_before=10,
        frames_after=20,
        recovery_ms=900.0,
        announcements=2,
        other_baseline_visits=2,
        missing_other_visits=missing,
        replayed_other_visits=0,
        unended_tracks=unended,
        duplicate_event_ids=duplicates,
        events=8 - 2 * len(missing) - len(unended) + duplicates,
    )


@pytest.mark.parametrize(
    ("live", "lost", "doubled"),
    [
        (make_live([], [], 0), 0, 0),  # every visit announced and ended once
        (make_live(["door:unknown"], [], 0), 2, 0),  # the file camera lost a visit: 2 events
        (make_live([], ["track-7"], 0), 1, 0),  # a live track never ended
        (make_live([], [], 1), 0, 1),  # an event delivered twice
    ],
)
def test_the_live_camera_pass_counts_in_the_totals(live: LiveCameraOutcome, lost: int, doubled: int) -> None:
    # given a result holding only the live-camera pass
    result = FaultBenchResult(
        clips=[], seed=0, profile="live", workers=2, reorder_window_ms=0, baseline_visits=[],
        baseline_seconds=1.0, passes=[], faults=[], gallery_writes=0, gallery_writes_lost=[],
        cpu_model="cpu", cpu_count=2, live_camera=live,
    )  # fmt: skip
    # then its losses and duplicates are the result's, out of 2 events per visit
    assert (result.events_expected, result.events_lost, result.duplicate_events) == (8, lost, doubled)
    assert "Live camera" in result.to_markdown()


@pytest.mark.redis
@pytest.mark.slow
def test_a_live_camera_killed_and_back_loses_and_doubles_nothing(
    settings: Settings, tmp_path: Path, rtsp_available: None
) -> None:
    # given the clip as a file camera and, over RTSP, as a live camera
    require(CLIP)
    require(PEOPLE)
    require(LFW_PEOPLE)
    # when the service runs once on the files, then beside the live camera whose server is
    # killed and started again
    result = run_fault_bench([CLIP, CLIP], PEOPLE, LFW_PEOPLE, settings, seed=0, profile="live")
    # then the camera came back, every track ended, no event came twice, and the file camera
    # beside it delivered its baseline visits
    live = result.live_camera
    assert live is not None, f"the live pass did not run: {result.live_camera_skipped}"
    assert [fault.kind for fault in result.faults] == [FaultKind.CAMERA_KILL]
    assert live.frames_before > 0 and live.frames_after > 0, "frames before the kill and after the restart"
    assert live.recovery_ms is not None
    assert live.unended_tracks == [], "announced tracks that never ended"
    assert live.duplicate_event_ids == 0, "event ids delivered twice"
    assert live.missing_other_visits == [], "the file camera lost visits"
    assert live.other_baseline_visits > 0, "the file camera had visits to compare"
    assert result.events_lost == 0 and result.duplicate_events == 0
