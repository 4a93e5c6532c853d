"""Recognition events on real Redis servers: publishing, reading back, following, pub/sub.

Also keeps the published schema honest: ``docs/events.schema.json`` must be what
``vigil events --schema`` prints, and ``docs/events.md`` must describe every field.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Generator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import ValidationError

from streamer.events import (
    Event,
    EventPublisher,
    EventType,
    event_json_schema,
    follow_events,
    iso_time,
    read_events,
    stream_id_since,
    subscribe,
)
from tests.conftest import RedisBackend
from vigil.config.streamer import EventsConfig
from vigil.errors import VigilError

DOCS = Path(__file__).resolve().parents[2] / "docs"
# Generous bounds for things that take milliseconds, so a loaded machine cannot fail them.
WAIT_S = 5.0
FOLLOW_BLOCK_MS = 50


def make_event(
    camera: str = "door",
    identity_id: str | None = "id-ada",
    name: str | None = "Ada Lovelace",
    kind: EventType = EventType.RECOGNIZED,
    frame: int = 0,
    **overrides: Any,
) -> Event:
    """A valid event; ``overrides`` replace any field."""
    fields: dict[str, Any] = {
        "type": kind,
        "captured_at": iso_time(1_795_341_600.0 + frame),
        "camera": camera,
        "track_id": f"{camera}-run1-{frame}",
        "identity_id": identity_id,
        "name": name,
        "score": 0.97 if identity_id else None,
        "threshold": 0.92,
        "margin": 0.01,
        "box": [10.0, 20.0, 110.0, 140.0],
        "landmarks": [[40.0, 60.0], [80.0, 60.0], [60.0, 85.0], [45.0, 110.0], [75.0, 110.0]],
        "frame": frame,
        "embedder_version": "dlib_resnet_v1+flip",
        "calibration": "configuration",
        "latency_ms": 12.5,
        "track_frames": 2,
    }
    fields.update(overrides)
    return Event(**fields)


@pytest.fixture
def client(backend: RedisBackend) -> redis.Redis:
    return backend.client()


@pytest.fixture
def config(backend: RedisBackend) -> EventsConfig:
    """Events stream and channels in the test's namespace (deleted on teardown)."""
    return EventsConfig(stream=f"{backend.namespace}:events", channel_prefix=f"{backend.namespace}:events")


@pytest.fixture
def publisher(client: redis.Redis, config: EventsConfig) -> EventPublisher:
    return EventPublisher(client, config)


def published_ids(events: Iterator[tuple[str, Event]]) -> list[str]:
    return [event.event_id for _, event in events]


def text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


# --- the schema ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected_error"),
    [
        ({}, None),  # a complete event
        ({"identity_id": None, "name": None, "score": None}, None),  # nobody named, empty gallery
        ({"box": [1.0, 2.0, 3.0]}, ValidationError),  # a box has four numbers
        ({"frame": -1}, ValidationError),  # frames count from 0
        ({"track_frames": 0}, ValidationError),  # a track has at least the frame behind the event
        ({"type": "seen"}, ValidationError),  # not one of the three types
        ({"colour": "red"}, ValidationError),  # unknown fields are refused, not dropped
    ],
)
def test_event_validation(overrides: dict[str, Any], expected_error: type[Exception] | None) -> None:
    if expected_error is not None:
        with pytest.raises(expected_error):
            make_event(**overrides)
        return
    event = make_event(**overrides)
    # then its JSON reads back as the same event
    assert Event.model_validate_json(event.to_json()) == event
    assert json.loads(event.to_json())["schema_version"] == 1


def test_schema_file_is_what_vigil_events_schema_prints() -> None:
    schema_file = DOCS / "events.schema.json"
    expected = json.dumps(event_json_schema(), indent=2) + "\n"
    assert schema_file.exists(), f"{schema_file} is missing: run `vigil events --schema > {schema_file}`"
    assert schema_file.read_text(encoding="utf-8") == expected, (
        "docs/events.schema.json is out of date: run `vigil events --schema > docs/events.schema.json`"
    )


def test_every_event_field_is_documented() -> None:
    guide = DOCS / "events.md"
    if not guide.exists():
        pytest.skip("docs/events.md is not written yet")
    text = guide.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE))
    missing = sorted(set(Event.model_fields) - documented)
    assert not missing, f"fields of Event missing from the field table of docs/events.md: {missing}"
    for kind in EventType:
        assert f"`{kind.value}`" in text, f"event type {kind.value} is not described in docs/events.md"


# --- since --------------------------------------------------------------------------------------


def _local_ms(year: int, month: int, day: int, hour: int = 0) -> str:
    """The stream id of a local wall-clock time."""
    return f"{int(datetime(year, month, day, hour).astimezone().timestamp() * 1000)}-0"


@pytest.mark.parametrize(
    ("since", "expected", "expected_error"),
    [
        ("0", "0-0", None),  # everything
        ("1795341600000-3", "1795341600000-3", None),  # a stream id, as is
        ("2026-11-22T10:00:00+00:00", "1795341600000-0", None),  # an ISO time with its zone
        ("2026-11-22T10:00:00Z", "1795341600000-0", None),  # Zulu
        ("2026-11-22T10:00:00.250+00:00", "1795341600250-0", None),  # milliseconds kept
        ("2026-11-22T10:00:00", _local_ms(2026, 11, 22, 10), None),  # no zone: the user's local time
        ("2026-11-22", _local_ms(2026, 11, 22), None),  # a date: its local midnight, not a stream id
        ("yesterday", None, VigilError),  # words
        ("", None, VigilError),  # nothing
        ("-5", None, VigilError),  # not a stream id: no milliseconds part
        ("1-2-3", None, VigilError),  # neither a stream id nor a date
        ("2026-13-40T99:00", None, VigilError),  # out-of-range ISO fields
    ],
)
def test_stream_id_since(since: str, expected: str | None, expected_error: type[Exception] | None) -> None:
    if expected_error is not None:
        with pytest.raises(expected_error) as caught:
            stream_id_since(since)
        message = str(caught.value)
        assert "\n" not in message and repr(since) in message, f"not a one-line message naming it: {message}"
        return
    assert stream_id_since(since) == expected


# --- reading back -------------------------------------------------------------------------------


def test_publish_then_read_with_filters(publisher: EventPublisher, client: redis.Redis) -> None:
    # given events on two cameras, for two people and nobody
    events = [
        make_event("door", "id-ada", "Ada Lovelace", frame=0),
        make_event("door", None, None, EventType.UNKNOWN, frame=1),
        make_event("hall", "id-ada", "Ada Lovelace", frame=2),
        make_event("hall", "id-bob", "Bob", frame=3),
        make_event("hall", "id-ada", "Ada Lovelace", EventType.TRACK_ENDED, frame=4, duration_s=1.5),
    ]
    stream_ids = [publisher.publish(event) for event in events]
    config = publisher.config
    # when everything is read back, then it is all there, in order, unchanged, with its ids
    assert list(read_events(client, config)) == list(zip(stream_ids, events, strict=True))
    # and each filter keeps exactly the matching events
    ada = [events[0].event_id, events[2].event_id, events[4].event_id]
    assert published_ids(read_events(client, config, camera="door")) == [e.event_id for e in events[:2]]
    assert published_ids(read_events(client, config, identity="id-ada")) == ada, "by identity id"
    assert published_ids(read_events(client, config, identity="Ada Lovelace")) == ada, "by name"
    both = read_events(client, config, camera="hall", identity="Ada Lovelace")
    assert published_ids(both) == [events[2].event_id, events[4].event_id], "camera and identity together"
    assert list(read_events(client, config, identity="nobody")) == []
    assert list(read_events(client, config, camera="garage")) == []


def test_read_events_pages_through_long_streams(publisher: EventPublisher, client: redis.Redis) -> None:
    # given 7 events
    events = [make_event(frame=n) for n in range(7)]
    for event in events:
        publisher.publish(event)
    # when read back 3 at a time, then none is lost or repeated at the page boundaries
    read = published_ids(read_events(client, publisher.config, batch=3))
    assert read == [event.event_id for event in events]


def test_read_events_of_an_empty_stream(client: redis.Redis, config: EventsConfig) -> None:
    assert list(read_events(client, config)) == []


def test_since_zero_time_and_stream_id(publisher: EventPublisher, client: redis.Redis) -> None:
    # given an early event, a moment, and two later events (stream ids come from the server's
    # clock, the moment from ours: the test servers run on this machine)
    early = make_event(frame=0)
    publisher.publish(early)
    time.sleep(0.02)
    moment = time.time()
    time.sleep(0.02)
    later = [make_event(frame=1), make_event(frame=2)]
    later_ids = [publisher.publish(event) for event in later]
    config = publisher.config
    # then since=0 gives everything
    assert published_ids(read_events(client, config, since="0")) == [early.event_id] + [
        e.event_id for e in later
    ]
    # and an ISO time (UTC, or local without a zone) gives what came after it
    expected = [event.event_id for event in later]
    assert published_ids(read_events(client, config, since=iso_time(moment))) == expected, "UTC time"
    local = datetime.fromtimestamp(moment).isoformat(timespec="milliseconds")
    assert published_ids(read_events(client, config, since=local)) == expected, "local time"
    # and a stream id gives that event and the ones after it
    assert published_ids(read_events(client, config, since=later_ids[1])) == [later[1].event_id]
    # and a time after everything gives nothing
    future = datetime.fromtimestamp(time.time() + 3600, UTC).isoformat()
    assert list(read_events(client, config, since=future)) == []


def test_invalid_entries_are_skipped_with_a_warning(
    publisher: EventPublisher, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # given valid events around entries no Vigil reader understands
    config = publisher.config
    first = make_event(frame=0)
    publisher.publish(first)
    not_json = text(client.xadd(config.stream, {"event": "{not json"}))
    no_field = text(client.xadd(config.stream, {"payload": "{}"}))
    newer = json.loads(make_event(frame=1).to_json()) | {"schema_version": 2, "mood": "happy"}
    newer_id = text(client.xadd(config.stream, {"event": json.dumps(newer)}))
    last = make_event(frame=2)
    publisher.publish(last)
    # when a reader reads them all
    with caplog.at_level(logging.WARNING, logger="streamer.events"):
        read = published_ids(read_events(client, config))
    # then it skips them, saying which, and carries on
    assert read == [first.event_id, last.event_id]
    warned = " ".join(record.getMessage() for record in caplog.records)
    for skipped in (not_json, no_field, newer_id):
        assert skipped in warned, f"no warning names the skipped entry {skipped}: {warned}"


# --- following ----------------------------------------------------------------------------------


class Publishing:
    """Publishes a new event every ``every_s`` in a thread until stopped."""

    def __init__(self, publisher: EventPublisher, every_s: float = 0.05) -> None:
        self.published: list[Event] = []
        self._publisher = publisher
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="publishing", daemon=True)

    def __enter__(self) -> Publishing:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(WAIT_S)

    def _run(self) -> None:
        frame = 100
        while not self._stop.wait(self._every_s):
            event = make_event(frame=frame)
            self._publisher.publish(event)
            self.published.append(event)
            frame += 1


def test_follow_events_yields_new_events_then_returns_on_stop(
    publisher: EventPublisher, client: redis.Redis
) -> None:
    # given an old event, and events being published as we follow
    old = make_event(frame=0)
    publisher.publish(old)
    stop = threading.Event()
    watchdog = threading.Timer(WAIT_S, stop.set)  # a broken follow fails instead of hanging
    watchdog.start()
    followed: list[Event] = []
    try:
        with Publishing(publisher) as publishing:
            # when we follow from now ("$") and take three events
            for _, event in follow_events(client, publisher.config, block_ms=FOLLOW_BLOCK_MS, stop=stop):
                followed.append(event)
                if len(followed) == 3:
                    break
        # then they are new ones, in publication order, and the old one is not among them
        assert len(followed) == 3, "follow_events stopped before three events arrived"
        assert old.event_id not in {event.event_id for event in followed}
        new_ids = [event.event_id for event in publishing.published]
        positions = [new_ids.index(event.event_id) for event in followed]
        assert positions == sorted(positions) and len(set(positions)) == 3, positions
        # when following again with stop already set
        stop.set()
        started = time.monotonic()
        after_stop = list(follow_events(client, publisher.config, after="0-0", stop=stop))
        # then it returns at once
        assert after_stop == [] and time.monotonic() - started < 1.0
    finally:
        watchdog.cancel()


def test_follow_events_returns_within_a_block_once_stop_is_set(
    publisher: EventPublisher, client: redis.Redis
) -> None:
    # given a follower waiting on a quiet stream in a thread
    stop = threading.Event()
    finished = threading.Event()

    def follow() -> None:
        for _ in follow_events(client, publisher.config, block_ms=FOLLOW_BLOCK_MS, stop=stop):
            pass
        finished.set()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    time.sleep(0.1)
    assert not finished.is_set(), "follow_events returned on its own before stop was set"
    # when stop is set, then it returns within about one block
    stop.set()
    assert finished.wait(WAIT_S), "follow_events did not return after stop was set"
    thread.join(WAIT_S)


def test_follow_events_filters_and_skips_invalid_entries(
    publisher: EventPublisher, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # given, after an old event: another camera's event, a broken entry, then ours
    config = publisher.config
    start_id = publisher.publish(make_event(frame=0))
    publisher.publish(make_event("hall", frame=1))
    client.xadd(config.stream, {"event": "[]"})
    ours = make_event("door", frame=2)
    publisher.publish(ours)
    # when following the door from the old event on
    with caplog.at_level(logging.WARNING, logger="streamer.events"):
        stream = follow_events(client, config, after=start_id, camera="door", block_ms=FOLLOW_BLOCK_MS)
        assert isinstance(stream, Generator)
        _, first = next(stream)
        stream.close()
    # then the first event is ours: the hall's is filtered, the broken one skipped with a warning
    assert first.event_id == ours.event_id
    assert any("skipping event" in record.getMessage() for record in caplog.records)


def test_subscribe_since_zero_yields_past_then_new_events(
    publisher: EventPublisher, client: redis.Redis
) -> None:
    # given two past events of the door and one of the hall
    past = [make_event("door", frame=0), make_event("hall", frame=1), make_event("door", frame=2)]
    for event in past:
        publisher.publish(event)
    new = make_event("door", frame=3)
    sentinel = make_event("door", frame=99)
    # a broken subscribe fails on the sentinel instead of hanging
    watchdog = threading.Timer(WAIT_S, publisher.publish, args=(sentinel,))
    events = subscribe(client, publisher.config, camera="door", since="0")
    assert isinstance(events, Generator)
    try:
        # when subscribing to the door from the beginning
        got = [next(events), next(events)]
        # then the past door events come first
        assert [e.event_id for e in got] == [past[0].event_id, past[2].event_id]
        # when a new event is published from another thread while we wait
        threading.Timer(0.1, publisher.publish, args=(new,)).start()
        watchdog.start()
        # then it comes next
        assert next(events).event_id == new.event_id, "the new event did not come after the past ones"
    finally:
        watchdog.cancel()
        events.close()


# --- pub/sub ------------------------------------------------------------------------------------


def test_subscribers_on_camera_and_identity_channels_receive_the_json(
    publisher: EventPublisher, client: redis.Redis
) -> None:
    # given listeners on the door's channel and on Ada's
    assert publisher.camera_channel("door") == f"{publisher.config.channel_prefix}:camera:door"
    assert publisher.identity_channel("id-ada") == f"{publisher.config.channel_prefix}:identity:id-ada"
    listener = client.pubsub()  # type: ignore[no-untyped-call]
    listener.subscribe(publisher.camera_channel("door"), publisher.identity_channel("id-ada"))
    try:
        for _ in range(2):  # wait for both subscriptions to be confirmed
            assert listener.get_message(timeout=WAIT_S) is not None
        # when an event naming Ada on the door, and an unknown face on the door, are published
        ada = make_event("door", "id-ada", "Ada Lovelace", frame=0)
        stranger = make_event("door", None, None, EventType.UNKNOWN, frame=1)
        publisher.publish(ada)
        publisher.publish(stranger)
        # then Ada's event arrives on both channels, the stranger's on the camera's only
        received: list[tuple[str, str]] = []
        deadline = time.monotonic() + WAIT_S
        while len(received) < 3 and time.monotonic() < deadline:
            message = listener.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None:
                received.append((message["channel"].decode(), message["data"].decode()))
        assert sorted(received) == sorted(
            [
                (publisher.camera_channel("door"), ada.to_json()),
                (publisher.identity_channel("id-ada"), ada.to_json()),
                (publisher.camera_channel("door"), stranger.to_json()),
            ]
        )
        assert Event.model_validate_json(received[0][1]).camera == "door"
        assert listener.get_message(timeout=0.1) is None, "an unexpected extra message"
    finally:
        listener.close()


def test_the_stream_id_after_one_leaves_it_out_and_refuses_what_redis_cannot_hold() -> None:
    from streamer.events import stream_id_after

    assert stream_id_after("1733443200123-0") == "1733443200123-1"
    assert stream_id_after("0-0") == "0-1"
    for bad in ("yesterday", "12", f"1-{2**64 - 1}", f"{2**64}-0"):
        with pytest.raises(VigilError):
            stream_id_after(bad)
