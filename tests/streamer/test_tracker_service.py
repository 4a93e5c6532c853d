"""The tracker service: results in frame order, and events with a Redis-kept cooldown.

``ReorderBuffer`` is tested on its own with explicit clock values. ``TrackerService`` runs
in a thread on real Redis servers (``backend``): results are written to the faces stream as
workers write them (``XADD result.to_fields()``), out of order and with duplicates, and the
events stream is checked afterwards. The synthetic people come from ``test_tracking``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import numpy as np
import redis

from streamer.analysis import FaceResult, FrameResult
from streamer.events import Event, EventType, read_events
from streamer.tracker import TRACKER_CONSUMER, TRACKER_GROUP, ReorderBuffer, TrackerService
from tests.conftest import RedisBackend
from tests.streamer.test_tracking import FRAME_INTERVAL_S, START_S, STEP_PX, People, Person, make_frame
from vigil.config import Settings
from vigil.config.streamer import BusConfig, EventsConfig, StreamerConfig, TrackerConfig
from vigil.streams import StreamResponse

WINDOW_S = 0.5
# Bounds on waiting for the service: generous, so a loaded machine cannot fail the tests.
WAIT_S = 10.0
TEST_TRACKER = {"reorder_window_ms": 50, "max_gap_s": 0.5, "cooldown_s": 0.3}


def result(number: int, camera: str = "door", end_of_stream: bool = False) -> FrameResult:
    """A face-less result: all ReorderBuffer looks at is the camera and the number."""
    return make_frame(number, [], camera=camera, end_of_stream=end_of_stream)


def released(ready: Iterable[tuple[FrameResult, str, int]]) -> list[tuple[str, int, int]]:
    """``(camera, number, skipped)`` of released results."""
    return [(frame.camera, frame.number, skipped) for frame, _, skipped in ready]


# --- ReorderBuffer ------------------------------------------------------------------------------


def test_reorder_buffer_releases_in_order() -> None:
    # given results 2, 0, 1 of a camera, arriving together
    buffer = ReorderBuffer(WINDOW_S)
    for number in (2, 0, 1):
        assert buffer.add(result(number), f"id-{number}", now=0.0)
    # then the camera's first result waits the window (an earlier one may still come)
    assert buffer.release(now=0.1) == []
    # when the window has passed, then all three come out in order, none skipped
    ready = buffer.release(now=WINDOW_S)
    assert released(ready) == [("door", 0, 0), ("door", 1, 0), ("door", 2, 0)]
    assert [entry_id for _, entry_id, _ in ready] == ["id-0", "id-1", "id-2"]
    # and the next in-order result comes out at once
    buffer.add(result(3), "id-3", now=1.0)
    assert released(buffer.release(now=1.0)) == [("door", 3, 0)]


def test_reorder_buffer_waits_for_a_missing_frame_then_reports_the_skip() -> None:
    # given frames 0 and 1 released
    buffer = ReorderBuffer(WINDOW_S)
    for number in (0, 1):
        buffer.add(result(number), f"id-{number}", now=0.0)
    buffer.release(now=WINDOW_S)
    # when frames 4 and 5 arrive but not 2 and 3
    buffer.add(result(4), "id-4", now=1.0)
    buffer.add(result(5), "id-5", now=1.1)
    # then they are held for the window
    assert buffer.release(now=1.0 + WINDOW_S * 0.9) == []
    # and once it has passed they come out, the first saying that two frames were skipped
    assert released(buffer.release(now=1.0 + WINDOW_S)) == [("door", 4, 2), ("door", 5, 0)]


def test_reorder_buffer_releases_a_late_frame_that_comes_within_the_window() -> None:
    # given frame 0 released and frame 2 waiting for frame 1
    buffer = ReorderBuffer(WINDOW_S)
    buffer.add(result(0), "id-0", now=0.0)
    buffer.release(now=WINDOW_S)
    buffer.add(result(2), "id-2", now=1.0)
    assert buffer.release(now=1.1) == []
    # when frame 1 comes within the window, then both come out at once, in order
    buffer.add(result(1), "id-1", now=1.2)
    assert released(buffer.release(now=1.2)) == [("door", 1, 0), ("door", 2, 0)]


def test_reorder_buffer_discards_duplicates_and_late_frames() -> None:
    buffer = ReorderBuffer(WINDOW_S)
    # given frame 0 held: a duplicate of it is refused
    assert buffer.add(result(0), "id-0", now=0.0)
    assert not buffer.add(result(0), "id-0-again", now=0.0), "a duplicate of a held frame was accepted"
    # given frame 0 released, and frame 2 released after the window (frame 1 skipped)
    buffer.release(now=WINDOW_S)
    buffer.add(result(2), "id-2", now=1.0)
    assert released(buffer.release(now=1.0 + WINDOW_S)) == [("door", 2, 1)]
    # then frame 0 again, and frame 1 arriving too late, are refused and never released
    assert not buffer.add(result(0), "id-0-late", now=2.0), "a duplicate of a released frame was accepted"
    assert not buffer.add(result(1), "id-1", now=2.0), "a frame behind the released ones was accepted"
    assert buffer.release(now=10.0) == []


def test_reorder_buffer_keeps_cameras_apart() -> None:
    # given both cameras started, and the hall missing a frame
    buffer = ReorderBuffer(WINDOW_S)
    for camera in ("door", "hall"):
        buffer.add(result(0, camera), f"{camera}-0", now=0.0)
    buffer.release(now=WINDOW_S)
    buffer.add(result(2, "hall"), "hall-2", now=1.0)
    # when the door's next frame arrives, then it is not held up by the hall
    buffer.add(result(1, "door"), "door-1", now=1.0)
    assert released(buffer.release(now=1.0)) == [("door", 1, 0)]


def test_frame_result_fields_round_trip() -> None:
    # given a result with a named face, an unknown one, and no rule in force
    people = People()
    faces = [people.face(people.person("id-ada", "Ada"), 10.0), people.face(people.person(None), 200.0)]
    original = make_frame(7, faces, threshold=math.nan, margin=math.nan, read_at=math.nan)
    # when it goes through stream fields as Redis returns them (bytes)
    fields = {key.encode(): value.encode() for key, value in original.to_fields().items()}
    copy = FrameResult.from_fields(fields)
    # then everything comes back, NaNs included, embeddings bit for bit
    assert (copy.camera, copy.number, copy.captured_at, copy.end_of_stream) == (
        "door",
        7,
        original.captured_at,
        False,
    )
    assert math.isnan(copy.threshold) and math.isnan(copy.margin) and math.isnan(copy.read_at)
    assert (copy.calibration, copy.embedder_version) == (original.calibration, original.embedder_version)
    for got, sent in zip(copy.faces, original.faces, strict=True):
        assert got.embedding.dtype == np.float32 and np.array_equal(got.embedding, sent.embedding)
        assert (got.box, got.landmarks, got.identity_id, got.name, got.score, got.candidate_id) == (
            sent.box,
            sent.landmarks,
            sent.identity_id,
            sent.name,
            sent.score,
            sent.candidate_id,
        )


# --- TrackerService on Redis --------------------------------------------------------------------


def make_settings(settings: Settings, backend: RedisBackend, **tracker: Any) -> Settings:
    """Settings whose streams and keys live in the backend's namespace, with a fast tracker."""
    namespace = backend.namespace
    streamer = StreamerConfig(
        bus=BusConfig(stream=f"{namespace}:frames", faces_stream=f"{namespace}:faces"),
        events=EventsConfig(stream=f"{namespace}:events", channel_prefix=f"{namespace}:events"),
        tracker=TrackerConfig(**(TEST_TRACKER | tracker)),
    )
    return settings.model_copy(update={"streamer": streamer})


def write_results(client: redis.Redis, settings: Settings, results: Sequence[FrameResult]) -> list[str]:
    """Append results to the faces stream as workers do; their entry ids."""
    stream = settings.streamer.bus.faces_stream
    return [text(client.xadd(stream, cast(Any, result.to_fields()))) for result in results]


def visit(
    people: People, person: Person, numbers: range, start_s: float, x0: float = 100.0
) -> list[FrameResult]:
    """``person`` walking through frames ``numbers``, the first captured at ``start_s``."""
    return [
        make_frame(
            number,
            [people.face(person, x0 + STEP_PX * i)],
            captured_at=start_s + i * FRAME_INTERVAL_S,
            read_at=time.time(),
        )
        for i, number in enumerate(numbers)
    ]


def text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def end_of_stream(frames: int, camera: str = "door") -> FrameResult:
    return make_frame(frames, [], camera=camera, end_of_stream=True)


class ServiceThread:
    """Runs ``TrackerService.run`` in a thread, handing its exception to the test."""

    def __init__(self, service: TrackerService) -> None:
        self.service = service
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="tracker", daemon=True)

    def __enter__(self) -> ServiceThread:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self._thread.join(WAIT_S)

    def join(self) -> None:
        """Wait for the service to return by itself (its cameras ended)."""
        self._thread.join(WAIT_S)
        assert not self._thread.is_alive(), f"the tracker did not return within {WAIT_S} s"
        if self.error is not None:
            raise self.error

    def stop_and_join(self) -> None:
        self.stop.set()
        self.join()

    def _run(self) -> None:
        try:
            self.service.run(self.stop)
        except BaseException as exc:  # handed to the test thread, which raises it
            self.error = exc


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def all_tracked(client: redis.Redis, settings: Settings) -> bool:
    """Every result on the faces stream has been delivered to the tracker and acknowledged."""
    stream = settings.streamer.bus.faces_stream
    (group,) = [g for g in client.xinfo_groups(stream) if g["name"] == TRACKER_GROUP.encode()]
    newest = client.xrevrange(stream, count=1)
    return bool(group["pending"] == 0 and newest and group["last-delivered-id"] == newest[0][0])


def events_of(client: redis.Redis, settings: Settings) -> list[Event]:
    return [event for _, event in read_events(client, settings.streamer.events)]


def summary(events: Iterable[Event]) -> Counter[tuple[str, str | None]]:
    """How many events of each (type, identity)."""
    return Counter((event.type.value, event.identity_id) for event in events)


def assert_no_duplicates(events: Sequence[Event]) -> None:
    assert len({event.event_id for event in events}) == len(events), "an event was published twice"
    per_track = Counter((event.track_id, event.type) for event in events)
    repeated = [key for key, count in per_track.items() if count > 1]
    assert not repeated, f"tracks with repeated events: {repeated}"


def test_service_tracks_out_of_order_results_into_one_event_per_visit(
    backend: RedisBackend, settings: Settings
) -> None:
    # given a tracker service listening on the faces stream
    client = backend.client()
    config = make_settings(settings, backend)
    service = TrackerService(client, config, run_token="run1", finish_after={"door"})
    service.ensure_group()
    # and the results of a file: Ada on frames 0..5, Bob beside her on 3..9, then its end,
    # written out of order (several workers) with two results delivered twice
    people = People()
    ada, bob = people.person("id-ada", "Ada"), people.person("id-bob", "Bob")
    frames: list[FrameResult] = []
    for number in range(10):
        faces: list[FaceResult] = []
        if number <= 5:
            faces.append(people.face(ada, 100 + STEP_PX * number))
        if number >= 3:
            faces.append(people.face(bob, 300 + STEP_PX * number))
        frames.append(make_frame(number, faces, read_at=time.time()))
    order = [1, 0, 3, 2, 4, 10, 6, 5, 4, 8, 7, 9, 7]
    write_results(client, config, [frames[n] if n < 10 else end_of_stream(10) for n in order])
    # when the service runs until the camera has ended
    with ServiceThread(service) as running:
        running.join()
    # then each person was recognized once and their track ended once
    events = events_of(client, config)
    assert summary(events) == {
        ("recognized", "id-ada"): 1,
        ("recognized", "id-bob"): 1,
        ("track_ended", "id-ada"): 1,
        ("track_ended", "id-bob"): 1,
    }, [(event.type.value, event.identity_id, event.frame) for event in events]
    assert_no_duplicates(events)
    ended = {event.identity_id: event for event in events if event.type is EventType.TRACK_ENDED}
    assert (ended["id-ada"].track_frames, ended["id-ada"].frame) == (6, 5), "a duplicate was tracked twice"
    assert (ended["id-bob"].track_frames, ended["id-bob"].frame) == (7, 9)
    recognized = [event for event in events if event.type is EventType.RECOGNIZED]
    assert [event.frame for event in recognized] == [1, 4], "votes were counted out of order"
    assert all(event.track_id.startswith("door-run1-") and event.latency_ms >= 0 for event in events)
    # and every result, duplicates included, was acknowledged
    assert client.xpending(config.streamer.bus.faces_stream, TRACKER_GROUP)["pending"] == 0


def test_cooldown_makes_a_quick_return_the_same_visit(backend: RedisBackend, settings: Settings) -> None:
    # given a running service with a 0.3 s cooldown and 0.5 s max gap (capture time)
    client = backend.client()
    config = make_settings(settings, backend, cooldown_s=0.3, max_gap_s=0.5)
    service = TrackerService(client, config, run_token="run1")
    service.ensure_group()
    people = People()
    ada = people.person("id-ada", "Ada")
    cooldown_key = f"{config.streamer.events.stream}:cooldown:door:id-ada"
    with ServiceThread(service) as running:
        # when Ada comes, leaves (for more than max_gap_s) and comes back at once
        write_results(client, config, visit(people, ada, range(3), START_S))
        write_results(client, config, visit(people, ada, range(3, 6), START_S + 2.0))
        wait_for(lambda: all_tracked(client, config), "both visits are tracked")
        # then only her first track was announced
        first = events_of(client, config)
        assert summary(first)[("recognized", "id-ada")] == 1, "a return within the cooldown was announced"
        assert summary(first)[("track_ended", "id-ada")] == 1, "her first track did not end"
        # when she comes back once the cooldown has passed
        wait_for(lambda: client.exists(cooldown_key) == 0, "the cooldown has passed")
        write_results(client, config, visit(people, ada, range(6, 9), START_S + 4.0))
        wait_for(lambda: all_tracked(client, config), "the third visit is tracked")
        running.stop_and_join()
    # then that visit is announced again, and every track ended once
    events = events_of(client, config)
    assert summary(events) == {("recognized", "id-ada"): 2, ("track_ended", "id-ada"): 3}, [
        (event.type.value, event.frame) for event in events
    ]
    assert_no_duplicates(events)
    recognized = [event for event in events if event.type is EventType.RECOGNIZED]
    assert [event.frame for event in recognized] == [1, 7]


def test_cooldown_holds_across_a_restart_of_the_tracker(backend: RedisBackend, settings: Settings) -> None:
    # given a service that announced Ada, then was stopped
    client = backend.client()
    config = make_settings(settings, backend, cooldown_s=30.0)
    people = People()
    ada = people.person("id-ada", "Ada")
    first = TrackerService(client, config, run_token="run1", finish_after={"door"})
    first.ensure_group()
    write_results(client, config, [*visit(people, ada, range(3), START_S), end_of_stream(3)])
    with ServiceThread(first) as running:
        running.join()
    # when a new run of the tracker sees her come back within the cooldown
    second = TrackerService(client, config, run_token="run2", finish_after={"door"})
    write_results(client, config, [*visit(people, ada, range(3), START_S + 10.0), end_of_stream(3)])
    with ServiceThread(second) as running:
        running.join()
    # then it announces nothing new: only its track's end
    events = events_of(client, config)
    assert [(event.type, event.track_id.split("-")[1]) for event in events] == [
        (EventType.RECOGNIZED, "run1"),
        (EventType.TRACK_ENDED, "run1"),
        (EventType.TRACK_ENDED, "run2"),
    ]


def test_results_left_pending_by_a_stopped_tracker_are_tracked(
    backend: RedisBackend, settings: Settings
) -> None:
    # given results a previous tracker read but never acknowledged (it was killed)
    client = backend.client()
    config = make_settings(settings, backend)
    service = TrackerService(client, config, run_token="run2", finish_after={"door"})
    service.ensure_group()
    people = People()
    write_results(client, config, visit(people, people.person("id-ada", "Ada"), range(4), START_S))
    stream = config.streamer.bus.faces_stream
    taken = cast(StreamResponse, client.xreadgroup(TRACKER_GROUP, TRACKER_CONSUMER, {stream: ">"}, count=100))
    assert len(taken[0][1]) == 4
    write_results(client, config, [end_of_stream(4)])
    # when a new tracker runs
    with ServiceThread(service) as running:
        running.join()
    # then it tracks them: Ada is announced and her track ends, and nothing is left pending
    assert summary(events_of(client, config)) == {("recognized", "id-ada"): 1, ("track_ended", "id-ada"): 1}
    assert client.xpending(stream, TRACKER_GROUP)["pending"] == 0


def test_stopping_the_service_ends_open_tracks(backend: RedisBackend, settings: Settings) -> None:
    # given a running service that is tracking Ada on a live camera
    client = backend.client()
    config = make_settings(settings, backend, max_gap_s=30.0)
    service = TrackerService(client, config, run_token="run1")
    service.ensure_group()
    people = People()
    with ServiceThread(service) as running:
        write_results(client, config, visit(people, people.person("id-ada", "Ada"), range(3), START_S))
        wait_for(lambda: all_tracked(client, config), "her frames are tracked")
        assert [event.type for event in events_of(client, config)] == [EventType.RECOGNIZED]
        # when the service is stopped
        running.stop_and_join()
    # then her track is ended
    assert [event.type for event in events_of(client, config)] == [
        EventType.RECOGNIZED,
        EventType.TRACK_ENDED,
    ]
