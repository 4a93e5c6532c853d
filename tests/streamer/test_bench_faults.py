"""``vigil bench faults``: the real service on hamilton.mp4 (two cameras) under kills and poison.

The short profile kills the tracker, a worker and the embedded Redis server and poisons the
results stream, in real processes on a real Redis: no event may be lost or doubled, and the
person enrolled meanwhile must stay in the gallery. The comparison with the baseline is
checked on built passes.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from streamer.bench_faults import DEFAULT_LFW_DIR, run_fault_bench, write_reports
from streamer.bench_faults_report import FaultKind, PassRun, Visit
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
