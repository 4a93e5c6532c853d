"""Poison entries on every stream the service reads: counted, logged once, acknowledged and skipped.

A poison entry is one a reader cannot use: written by hand or by another version (malformed),
or trimmed from its stream while it was pending (no fields any more). The frame bus (read by
workers), the faces stream (read by the tracker) and the events stream (read by `vigil events`
and `vigil run --json`, without a consumer group) are checked on the real Redis servers
(``backend``), the embedded one being Redis 6.2 and the machine's 7.x, which differ in what
they answer for a trimmed pending entry.
"""

from __future__ import annotations

import logging
import time
from typing import Any, cast

import pytest
from prometheus_client import REGISTRY

from streamer.analysis import FrameResult
from streamer.events import EventPublisher, read_events
from streamer.tracker import TRACKER_CONSUMER, TRACKER_GROUP, TrackerService
from tests.conftest import RedisBackend
from tests.streamer.test_bus import CLAIM_IDLE_MS, make_bus, make_image, numbers
from tests.streamer.test_events import make_event
from tests.streamer.test_tracker_service import (
    ServiceThread,
    end_of_stream,
    events_of,
    make_settings,
    summary,
    visit,
    write_results,
)
from tests.streamer.test_tracking import START_S, People
from vigil.config import Settings
from vigil.errors import MalformedEntryError
from vigil.streams import StreamResponse


def poison_count(stream: str, reason: str) -> float:
    """``vigil_bus_poison_entries_total`` for one stream and reason (0 before the first)."""
    value = REGISTRY.get_sample_value("vigil_bus_poison_entries_total", {"stream": stream, "reason": reason})
    return value or 0.0


def warnings_about(caplog: pytest.LogCaptureFixture, entry_id: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING and entry_id in r.getMessage()]


# --- the frame bus (workers) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"camera": "door", "captured_at": "1.0", "jpeg": b"x"}, "no frame number"),
        ({"camera": "door", "number": "seven", "captured_at": "1.0", "jpeg": b"x"}, "number not a number"),
        ({"camera": "door", "number": "1", "captured_at": "1.0", "jpeg": b"not a jpeg"}, "undecodable JPEG"),
        ({"camera": "door", "number": "1", "captured_at": "1.0", "jpeg": b""}, "empty JPEG (OpenCV raises)"),
        ({"hello": "world"}, "not a frame at all"),
    ],
)
def test_a_poison_frame_is_counted_acknowledged_and_skipped(
    backend: RedisBackend, caplog: pytest.LogCaptureFixture, fields: dict[str, Any], why: str
) -> None:
    # given a good frame, a poison entry and another good frame on the bus
    bus = make_bus(backend)
    stream = bus.config.stream
    bus.publish("door", 0, 1.0, make_image(0))
    poison_id = cast(bytes, bus._client.xadd(stream, cast(Any, fields))).decode()
    bus.publish("door", 2, 2.0, make_image(2))
    before = poison_count(stream, "malformed")
    # when a worker reads them (a batch: decoded on several threads)
    with caplog.at_level(logging.WARNING):
        frames = bus.read("worker-1", count=10, block_ms=None)
    # then it gets the two good frames, and the poison entry is counted, acknowledged and gone
    assert numbers(frames) == [0, 2], why
    assert poison_count(stream, "malformed") == before + 1, f"{why}: not counted"
    pending = bus._client.xpending_range(stream, bus.config.group, min="-", max="+", count=10)
    assert poison_id.encode() not in [p["message_id"] for p in pending], f"{why}: left pending"
    # and it was logged once, in one line, without a traceback
    logged = warnings_about(caplog, poison_id)
    assert len(logged) == 1 and logged[0].exc_info is None, [r.getMessage() for r in logged]


def test_frames_trimmed_while_pending_with_a_dead_worker_are_released(backend: RedisBackend) -> None:
    # given three frames a worker took and never acknowledged (it died), then trimmed from the
    # full bus by newer frames
    bus = make_bus(backend, max_frames=2)
    stream = bus.config.stream
    for number in range(3):
        bus.publish("door", number, time.time(), make_image(number), read_at=time.time())
    assert len(bus.read("dead-worker", count=3, block_ms=None)) == 2  # frame 0 was trimmed already
    for number in range(3, 5):
        bus.publish("door", number, time.time(), make_image(number), read_at=time.time())
    assert bus._client.xpending(stream, "workers")["pending"] == 2
    before = poison_count(stream, "trimmed")
    # when another worker re-claims after claim_idle_ms
    time.sleep(CLAIM_IDLE_MS / 1000 * 1.5)
    fresh, stale = bus.reclaim("worker-2", count=10)
    # then there is nothing to work on, and the trimmed frames are no longer pending
    # (Redis 6.2 would keep them pending for ever, and every shutdown would wait for them)
    assert (fresh, stale) == ([], [])
    assert bus._client.xpending(stream, "workers")["pending"] == 0, "trimmed frames left pending"
    assert poison_count(stream, "trimmed") == before + 2
    # and the frames still waiting are delivered as usual
    assert numbers(bus.read("worker-2", count=10, block_ms=None)) == [3, 4]
    assert bus.backlog() == (0, 2)


# --- the faces stream (tracker) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"result": '{"camera": "door"}'}, "a result without a frame number (the issue's XADD)"),
        ({"result": "not json"}, "not JSON"),
        ({"other": "x"}, "no result field"),
        ({"result": '{"camera": "door", "number": 1, "captured_at": 1, "faces": [{"box": 1}]}'}, "bad face"),
        ({"result": "[1, 2]"}, "JSON, not an object"),
    ],
)
def test_a_poison_result_does_not_stop_the_tracker(
    backend: RedisBackend,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    fields: dict[str, str],
    why: str,
) -> None:
    # given a poison entry on the faces stream among Ada's results, then the camera's end
    client = backend.client()
    config = make_settings(settings, backend)
    stream = config.streamer.bus.faces_stream
    service = TrackerService(client, config, run_token="run1", finish_after={"door"})
    service.ensure_group()
    people = People()
    ada = visit(people, people.person("id-ada", "Ada"), range(4), START_S)
    write_results(client, config, ada[:2])
    poison_id = cast(bytes, client.xadd(stream, cast(Any, fields))).decode()
    write_results(client, config, [*ada[2:], end_of_stream(4)])
    before = poison_count(stream, "malformed")
    # when the tracker runs until the camera has ended
    with caplog.at_level(logging.WARNING), ServiceThread(service) as running:
        running.join()
    # then Ada is tracked as usual, the entry is counted and acknowledged
    assert summary(events_of(client, config)) == {("recognized", "id-ada"): 1, ("track_ended", "id-ada"): 1}
    assert poison_count(stream, "malformed") == before + 1, why
    assert client.xpending(stream, TRACKER_GROUP)["pending"] == 0, f"{why}: left pending"
    logged = warnings_about(caplog, poison_id)
    assert len(logged) == 1 and logged[0].exc_info is None, [r.getMessage() for r in logged]


def test_results_trimmed_while_pending_do_not_stop_a_restarted_tracker(
    backend: RedisBackend, settings: Settings
) -> None:
    # given results a killed tracker had read but not acknowledged, then trimmed (max_results)
    client = backend.client()
    config = make_settings(settings, backend)
    stream = config.streamer.bus.faces_stream
    service = TrackerService(client, config, run_token="run1", finish_after={"door"})
    service.ensure_group()
    people = People()
    write_results(client, config, visit(people, people.person(None), range(3), START_S))
    taken = cast(StreamResponse, client.xreadgroup(TRACKER_GROUP, TRACKER_CONSUMER, {stream: ">"}, count=10))
    assert len(taken[0][1]) == 3
    client.xtrim(stream, maxlen=0)
    ada = visit(people, people.person("id-ada", "Ada"), range(3, 7), START_S + 5.0)
    write_results(client, config, [*ada, end_of_stream(7)])
    before = poison_count(stream, "trimmed")
    # when a new tracker starts (it replays the pending results first)
    with ServiceThread(service) as running:
        running.join()
    # then it skips the trimmed ones, counts them, and tracks the rest
    assert poison_count(stream, "trimmed") == before + 3
    assert summary(events_of(client, config)) == {("recognized", "id-ada"): 1, ("track_ended", "id-ada"): 1}
    assert client.xpending(stream, TRACKER_GROUP)["pending"] == 0


# --- the events stream (`vigil events`, `vigil run --json`) ---------------------------------------


def test_a_poison_event_is_counted_and_skipped_by_readers(backend: RedisBackend, settings: Settings) -> None:
    # given a broken entry between two events
    client = backend.client()
    config = make_settings(settings, backend).streamer.events
    publisher = EventPublisher(client, config)
    publisher.publish(make_event("door", frame=0))
    client.xadd(config.stream, {"event": '{"type": "recognized"}'})
    publisher.publish(make_event("door", frame=1))
    before = poison_count(config.stream, "malformed")
    # when the events are read, then both events come back, and the broken entry is counted
    assert [event.frame for _, event in read_events(client, config)] == [0, 1]
    assert poison_count(config.stream, "malformed") == before + 1


def test_from_fields_rejects_a_malformed_entry_with_a_typed_error() -> None:
    # given entries that are no frame results, then from_fields raises MalformedEntryError only
    for fields in ({}, {b"result": b"{}"}, {b"result": b"\xff"}, {b"result": b'{"camera": "door"}'}):
        with pytest.raises(MalformedEntryError):
            FrameResult.from_fields(fields)
    with pytest.raises(MalformedEntryError):
        FrameResult.from_fields(None)
