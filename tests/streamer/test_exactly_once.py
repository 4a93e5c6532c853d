"""Each visit's events exactly once, across tracker kills and Redis errors at any point.

The tracker commits each step (events, cooldowns, its tracks, the acknowledgement of the
results) in one script, and a restarted tracker takes its tracks up from Redis. These tests
kill the real tracker process (``streamer.service.tracker_main``) with SIGKILL, make Redis
refuse a write, and leave more results pending than one read returns, on the real Redis
servers (``backend``), then count what consumers see on the events stream.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import cast

import numpy as np
import pytest
import redis

from streamer.analysis import FrameResult
from streamer.events import Event, EventType, event_id_for
from streamer.service import tracker_main
from streamer.tracker import TRACKER_CONSUMER, TRACKER_GROUP, TrackerService
from streamer.tracking import CameraTracker
from tests.conftest import DEFAULT_SERVER_URL, RedisBackend
from tests.streamer.test_tracker_service import (
    ServiceThread,
    end_of_stream,
    events_of,
    make_settings,
    summary,
    write_results,
)
from tests.streamer.test_tracking import FRAME_INTERVAL_S, START_S, STEP_PX, People, Person, make_frame
from vigil.config import Settings
from vigil.config.redis import RedisConfig
from vigil.config.streamer import TrackerConfig
from vigil.streams import StreamResponse

pytestmark = [pytest.mark.redis]

# A tracker process imports numpy, redis and the gallery: seconds on a loaded machine.
PROCESS_START_S = 60.0
VISIT_FRAMES = 12  # more than unknown_after_frames (8): strangers are announced
# Capture time between two visits: far beyond max_gap_s, so every visit is its own track.
BETWEEN_VISITS_S = 10.0
# Long enough that a writer waiting for a restarted tracker never ends a track by wall clock.
MAX_GAP_S = 2.0


def process_settings(settings: Settings, backend: RedisBackend) -> Settings:
    """Settings a tracker process can use to reach the backend's server and namespace."""
    config = make_settings(settings, backend, max_gap_s=MAX_GAP_S, attributes=False)
    redis_config = RedisConfig(
        url=None if backend.kind == "embedded" else os.environ.get("REDIS_URL", DEFAULT_SERVER_URL)
    )
    return config.model_copy(update={"redis": redis_config, "home": backend.home})


class TrackerProcess:
    """The real tracker entry point in a child process, to be killed with SIGKILL."""

    def __init__(self, settings: Settings, run_id: str = "run1") -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self.process: BaseProcess = context.Process(
            target=tracker_main,
            args=(logging.WARNING, settings, run_id, {"door"}, self._stop),
            name="vigil.tracker:test",
        )
        self.process.start()

    def kill(self) -> None:
        assert self.process.pid is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.join(10)

    def wait(self, timeout_s: float) -> int | None:
        """Wait for it to exit by itself (every camera ended); its exit code."""
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.kill()
            return None
        return self.process.exitcode


def visits(people: People, who: list[Person]) -> list[FrameResult]:
    """Each person walks past the door in turn, ``BETWEEN_VISITS_S`` apart; frames numbered on."""
    frames: list[FrameResult] = []
    for index, person in enumerate(who):
        start_s = START_S + index * (VISIT_FRAMES * FRAME_INTERVAL_S + BETWEEN_VISITS_S)
        for i in range(VISIT_FRAMES):
            face = people.face(person, 100.0 + STEP_PX * i)
            frames.append(
                make_frame(
                    len(frames), [face], captured_at=start_s + i * FRAME_INTERVAL_S, read_at=time.time()
                )
            )
    return frames


def delivered_id(client: redis.Redis, stream: str) -> bytes:
    groups = [g for g in client.xinfo_groups(stream) if g["name"] == TRACKER_GROUP.encode()]
    return cast(bytes, groups[0]["last-delivered-id"]) if groups else b"0-0"


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def assert_each_track_once(events: list[Event]) -> dict[str, list[EventType]]:
    """Every track announced once and ended once, after; event ids unique and the deterministic ones."""
    ids = [event.event_id for event in events]
    assert len(set(ids)) == len(ids), "an event id was published twice"
    per_track: dict[str, list[EventType]] = defaultdict(list)
    for event in events:
        per_track[event.track_id].append(event.type)
        assert event.event_id == event_id_for(event.track_id, event.type), "event id not deterministic"
    for track, types in per_track.items():
        assert len(types) == 2 and types[1] is EventType.TRACK_ENDED, f"track {track}: {types}"
        assert types[0] in (EventType.RECOGNIZED, EventType.UNKNOWN), f"track {track}: {types}"
    return per_track


def test_a_restored_camera_tracker_decides_as_the_original_would() -> None:
    # given a camera tracker following Ada and a stranger for a few frames
    people = People()
    ada, stranger = people.person("id-ada", "Ada"), people.person(None)
    frames = [
        make_frame(n, [people.face(ada, 100 + STEP_PX * n), people.face(stranger, 400 + STEP_PX * n)])
        for n in range(12)
    ]
    config = TrackerConfig(unknown_after_frames=8)
    original = CameraTracker("door", config, "run1")
    for frame in frames[:5]:
        original.update(frame)
    # when its snapshot is taken up by another one (a restarted tracker)
    restored = CameraTracker("door", config, "run1")
    restored.restore(*original.snapshot_parts())
    # then both decide the rest of the visit alike: same events, same ids, same tracks
    for frame in frames[5:]:
        assert restored.update(frame) == original.update(frame), f"frame {frame.number}"
    assert restored.end_all() == original.end_all()
    assert restored.next_track == original.next_track == 3
    # and a snapshot that is not one is refused with a ValueError
    with pytest.raises(ValueError, match="not a tracker snapshot"):
        restored.restore('{"version": 1, "tracks": [{"track_id": "x"}]}', {})


def test_a_tracker_killed_mid_visit_carries_on_the_same_track(
    backend: RedisBackend, settings: Settings
) -> None:
    # given a tracker process that announced a stranger from the first 10 frames of their visit
    client = backend.client()
    config = process_settings(settings, backend)
    TrackerService(client, config, run_token="run1").ensure_group()
    people = People()
    frames = visits(people, [people.person(None)])
    first = TrackerProcess(config)
    write_results(client, config, frames[:10])
    wait_until(lambda: len(events_of(client, config)) == 1, PROCESS_START_S, "the stranger is announced")
    # when it is killed (SIGKILL) and a new one sees the rest of the visit, then the camera's end
    first.kill()
    write_results(client, config, [*frames[10:], end_of_stream(len(frames))])
    assert TrackerProcess(config).wait(PROCESS_START_S) == 0
    # then the visit was announced once and ended once, as one track
    events = events_of(client, config)
    assert [(event.type, event.track_id) for event in events] == [
        (EventType.UNKNOWN, "door-run1-1"),
        (EventType.TRACK_ENDED, "door-run1-1"),
    ]
    assert events[1].track_frames == VISIT_FRAMES, "the restarted tracker lost the frames before the kill"


@pytest.mark.slow
def test_every_visit_yields_its_events_once_across_tracker_kills(
    backend: RedisBackend, settings: Settings
) -> None:
    # given six visits, three by enrolled people and three by strangers, written one result at a
    # time as the tracker takes them, so that kills land anywhere in the stream
    client = backend.client()
    config = process_settings(settings, backend)
    stream = config.streamer.bus.faces_stream
    TrackerService(client, config, run_token="run1").ensure_group()
    people = People()
    who = [
        people.person("id-ada", "Ada"),
        people.person(None),
        people.person("id-bob", "Bob"),
        people.person(None),
        people.person("id-cy", "Cy"),
        people.person(None),
    ]
    frames = [*visits(people, who)]
    frames.append(end_of_stream(len(frames)))
    written = threading.Event()

    def writer() -> None:
        for frame in frames:
            newest = write_results(client, config, [frame])[0].encode()
            while delivered_id(client, stream) != newest:
                time.sleep(0.005)
            time.sleep(0.05)
        written.set()

    feeding = threading.Thread(target=writer, daemon=True)
    feeding.start()
    # when the tracker is killed with SIGKILL three times, at random moments once it is working
    rng = np.random.default_rng(13)
    for _ in range(3):
        before = delivered_id(client, stream)
        tracker = TrackerProcess(config)
        wait_until(lambda: delivered_id(client, stream) != before, PROCESS_START_S, "the tracker reads")  # noqa: B023
        time.sleep(float(rng.uniform(0.0, 1.0)))
        tracker.kill()
    # and a last one runs until the camera's end
    assert TrackerProcess(config).wait(PROCESS_START_S + 30) == 0
    feeding.join(10)
    assert written.is_set(), "the writer did not finish"
    # then each visit is one track, announced once and ended once, whatever the kills interrupted
    events = events_of(client, config)
    per_track = assert_each_track_once(events)
    assert len(per_track) == len(who), f"{len(per_track)} tracks for {len(who)} visits: {dict(per_track)}"
    assert summary(e for e in events if e.type is not EventType.TRACK_ENDED) == {
        ("recognized", "id-ada"): 1,
        ("recognized", "id-bob"): 1,
        ("recognized", "id-cy"): 1,
        ("unknown", None): 3,
    }
    assert client.xpending(stream, TRACKER_GROUP)["pending"] == 0


def test_a_redis_error_while_publishing_loses_no_event(backend: RedisBackend, settings: Settings) -> None:
    # given Ada's visit on the faces stream, and an events stream Redis refuses to append to
    client = backend.client()
    config = make_settings(settings, backend, cooldown_s=30.0)
    events_stream = config.streamer.events.stream
    client.set(events_stream, "not a stream")
    people = People()
    ada = people.person("id-ada", "Ada")
    frames = [
        make_frame(n, [people.face(ada, 100 + STEP_PX * n)], captured_at=START_S + n * FRAME_INTERVAL_S)
        for n in range(4)
    ]
    first = TrackerService(client, config, run_token="run1", finish_after={"door"})
    first.ensure_group()
    write_results(client, config, [*frames, end_of_stream(4)])
    # when the tracker fails to publish her recognition (and stops, as a crashed process would)
    failing = ServiceThread(first)
    with failing:
        failing._thread.join(10)
    assert isinstance(failing.error, redis.ResponseError), failing.error
    # and the tracker is restarted once Redis takes writes again
    client.delete(events_stream)
    second = TrackerService(client, config, run_token="run1", finish_after={"door"})
    with ServiceThread(second) as running:
        running.join()
    # then her visit is announced once and ended once: neither lost to the cooldown nor doubled
    assert summary(events_of(client, config)) == {("recognized", "id-ada"): 1, ("track_ended", "id-ada"): 1}


def test_a_restarted_tracker_replays_every_pending_result(backend: RedisBackend, settings: Settings) -> None:
    # given 300 results and the camera's end, all read by a tracker that was killed before
    # acknowledging any (more than one read returns)
    client = backend.client()
    config = make_settings(settings, backend, max_gap_s=30.0)
    stream = config.streamer.bus.faces_stream
    service = TrackerService(client, config, run_token="run1", finish_after={"door"})
    service.ensure_group()
    people = People()
    ada = people.person("id-ada", "Ada")
    frames = [
        make_frame(n, [people.face(ada, 100 + (n % 50))], captured_at=START_S + n * FRAME_INTERVAL_S)
        for n in range(300)
    ]
    write_results(client, config, [*frames, end_of_stream(300)])
    taken = cast(
        StreamResponse, client.xreadgroup(TRACKER_GROUP, TRACKER_CONSUMER, {stream: ">"}, count=1000)
    )
    assert len(taken[0][1]) == 301
    # when a new tracker starts
    with ServiceThread(service) as running:
        running.join()
    # then it tracked all of them, ended the camera, and left nothing pending
    events = events_of(client, config)
    assert summary(events) == {("recognized", "id-ada"): 1, ("track_ended", "id-ada"): 1}
    assert [event.track_frames for event in events if event.type is EventType.TRACK_ENDED] == [300]
    assert client.xpending(stream, TRACKER_GROUP)["pending"] == 0


def test_a_new_run_ends_the_tracks_a_crashed_run_left_open(backend: RedisBackend, settings: Settings) -> None:
    # given a run whose tracker was killed while Ada's track was open
    client = backend.client()
    config = process_settings(settings, backend)
    TrackerService(client, config, run_token="run1").ensure_group()
    people = People()
    frames = visits(people, [people.person("id-ada", "Ada")])
    crashed = TrackerProcess(config, run_id="run1")
    write_results(client, config, frames[:5])
    wait_until(lambda: len(events_of(client, config)) == 1, PROCESS_START_S, "Ada is announced")
    crashed.kill()
    # when the service is started again (a new run) and its camera starts from frame 0
    write_results(client, config, [end_of_stream(0)])
    again = TrackerService(client, config, run_token="run2", finish_after={"door"})
    with ServiceThread(again) as running:
        running.join()
    # then the crashed run's track is ended, once, under its own id
    assert [(event.type, event.track_id) for event in events_of(client, config)] == [
        (EventType.RECOGNIZED, "door-run1-1"),
        (EventType.TRACK_ENDED, "door-run1-1"),
    ]
