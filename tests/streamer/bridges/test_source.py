"""A bridge's reader of the events stream, on a real Redis: resume without skip or repeat, lag, poison.

Every test publishes with the service's own ``EventPublisher`` to an events stream of its own
(``bridge_settings``), and reads through ``BridgeSource`` as a bridge does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis
from prometheus_client import REGISTRY
from redis.backoff import NoBackoff
from redis.retry import Retry

from streamer.bridges.source import (
    SOURCE_TARGET,
    BridgeEvent,
    BridgeSource,
    event_time_s,
    group_lag,
    group_name,
)
from streamer.events import Event, EventPublisher, EventType, iso_time
from tests.streamer.bridges.conftest import free_port
from tests.streamer.test_events import make_event
from vigil.config import Settings
from vigil.errors import RedisUnavailableError

pytestmark = pytest.mark.redis

MAX_AGE_S = 3600.0


@pytest.fixture
def client(bridge_settings: Settings) -> Iterator[redis.Redis]:
    redis_client = redis.Redis.from_url(str(bridge_settings.redis.url))
    yield redis_client
    redis_client.close()


def fresh_event(frame: int, **overrides: object) -> Event:
    """An event captured now (so no ``max_age_s`` drops it), of its own track."""
    return make_event(frame=frame, captured_at=iso_time(time.time()), **overrides)  # type: ignore[arg-type]


def publish(client: redis.Redis, settings: Settings, events: list[Event]) -> list[str]:
    publisher = EventPublisher(client, settings.streamer.events)
    return [publisher.publish(event) for event in events]


def read_all(source: BridgeSource, stop: threading.Event | None = None) -> list[BridgeEvent]:
    """Everything the source hands out now (pending first, then new), without blocking long."""
    stop = stop or threading.Event()
    got: list[BridgeEvent] = []
    while batch := source.read(stop, count=2, block_ms=50):
        got += batch
    return got


def counter(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_restarted_bridge_gets_its_unacknowledged_events_first_then_new_ones(
    client: redis.Redis, bridge_settings: Settings
) -> None:
    # given a bridge that read five events and acknowledged (delivered) only the first two
    first = BridgeSource(client, bridge_settings, "mqtt", MAX_AGE_S)
    first.ensure_group()
    published = publish(client, bridge_settings, [fresh_event(frame) for frame in range(5)])
    read = read_all(first)
    assert [item.stream_id for item in read] == published, "the bridge should read every event, in order"
    first.ack(published[:2])
    # when it restarts (a new source on the same group) and two more events are published
    restarted = BridgeSource(client, bridge_settings, "mqtt", MAX_AGE_S)
    restarted.ensure_group()  # idempotent: the group keeps its place
    later = publish(client, bridge_settings, [fresh_event(frame) for frame in range(5, 7)])
    again = read_all(restarted)
    # then it gets the three unacknowledged ones first, then the new ones: none skipped, none repeated
    assert [item.stream_id for item in again] == published[2:] + later
    assert [item.event.event_id for item in again] == [item.event.event_id for item in read[2:]] + [
        item.event.event_id for item in again[3:]
    ]
    # and once it acknowledges them, a third start reads nothing again
    restarted.ack([item.stream_id for item in again])
    assert read_all(BridgeSource(client, bridge_settings, "mqtt", MAX_AGE_S)) == []
    assert restarted.lag() == 0


def test_each_bridge_has_its_own_group(client: redis.Redis, bridge_settings: Settings) -> None:
    # given both bridges' groups, and an event the MQTT bridge delivered
    mqtt = BridgeSource(client, bridge_settings, "mqtt", MAX_AGE_S)
    webhooks = BridgeSource(client, bridge_settings, "webhooks", MAX_AGE_S)
    mqtt.ensure_group()
    webhooks.ensure_group()
    publish(client, bridge_settings, [fresh_event(0)])
    mqtt.ack([item.stream_id for item in read_all(mqtt)])
    # then the webhooks bridge still gets it, and its lag says so
    assert len(read_all(webhooks)) == 1
    assert (mqtt.lag(), webhooks.lag()) == (0, 1)


def test_a_new_group_starts_at_the_end_of_the_stream(client: redis.Redis, bridge_settings: Settings) -> None:
    # given events published before the bridge's group existed
    publish(client, bridge_settings, [fresh_event(0), fresh_event(1)])
    source = BridgeSource(client, bridge_settings, "webhooks", MAX_AGE_S)
    source.ensure_group()
    # when one more is published
    (after,) = publish(client, bridge_settings, [fresh_event(2)])
    # then only that one is read (a bridge does not replay the whole history when first configured)
    assert [item.stream_id for item in read_all(source)] == [after]


def test_events_older_than_max_age_are_dropped_acknowledged_and_counted(
    client: redis.Redis, bridge_settings: Settings
) -> None:
    # given a bridge that was down for two hours: an event from then, and one from now
    source = BridgeSource(client, bridge_settings, "mqtt", MAX_AGE_S)
    source.ensure_group()
    labels = {"bridge": "mqtt", "target": SOURCE_TARGET, "outcome": "dropped"}
    dropped_before = counter("vigil_bridge_events_total", labels)
    old = make_event(frame=0, captured_at=iso_time(time.time() - 2 * 3600))
    _, fresh_id = publish(client, bridge_settings, [old, fresh_event(1)])
    # when it reads
    read = read_all(source)
    # then only the fresh one is handed out, the old one is counted as dropped and never comes back
    assert [item.stream_id for item in read] == [fresh_id]
    assert counter("vigil_bridge_events_total", labels) == dropped_before + 1
    assert source.lag() == 1, "only the fresh event should wait for its acknowledgement"
    source.ack([fresh_id])
    assert read_all(BridgeSource(client, bridge_settings, "mqtt", MAX_AGE_S)) == []


def test_without_max_age_old_events_are_kept(client: redis.Redis, bridge_settings: Settings) -> None:
    # given a source that keeps every event, and an event a day old
    source = BridgeSource(client, bridge_settings, "mqtt", None)
    source.ensure_group()
    publish(client, bridge_settings, [make_event(captured_at=iso_time(time.time() - 86400))])
    # then it is read
    assert len(read_all(source)) == 1


def test_malformed_entries_are_acknowledged_counted_and_skipped(
    client: redis.Redis, bridge_settings: Settings
) -> None:
    # given a stream with a valid event between an entry without an event and one that is not JSON
    stream = bridge_settings.streamer.events.stream
    source = BridgeSource(client, bridge_settings, "webhooks", MAX_AGE_S)
    source.ensure_group()
    labels = {"stream": stream, "reason": "malformed"}
    before = counter("vigil_bus_poison_entries_total", labels)
    client.xadd(stream, {"note": "written by hand"})
    (valid,) = publish(client, bridge_settings, [fresh_event(0)])
    client.xadd(stream, {"event": "{not json"})
    # when the bridge reads
    read = read_all(source)
    # then it gets the event only, both others are counted and acknowledged (never read again)
    assert [item.stream_id for item in read] == [valid]
    assert counter("vigil_bus_poison_entries_total", labels) == before + 2
    assert source.lag() == 1


def test_an_event_deleted_while_pending_is_released(client: redis.Redis, bridge_settings: Settings) -> None:
    # given two events read and not acknowledged, and the first deleted meanwhile (trimmed by age)
    source = BridgeSource(client, bridge_settings, "mqtt", MAX_AGE_S)
    source.ensure_group()
    gone, kept = publish(client, bridge_settings, [fresh_event(0), fresh_event(1)])
    read_all(source)
    client.xdel(bridge_settings.streamer.events.stream, gone)
    # when the bridge restarts
    again = read_all(BridgeSource(client, bridge_settings, "mqtt", MAX_AGE_S))
    # then it gets the one that is still there, and the deleted one is no longer pending
    assert [item.stream_id for item in again] == [kept]
    assert source.lag() == 1


def test_lag_counts_unread_and_pending_events(client: redis.Redis, bridge_settings: Settings) -> None:
    stream = bridge_settings.streamer.events.stream
    source = BridgeSource(client, bridge_settings, "mqtt", MAX_AGE_S)
    # given no group yet (the bridge is not configured): no lag
    assert source.lag() == 0
    assert group_lag(client, stream, group_name("mqtt")) == 0
    # when the group exists and three events are published: three behind
    source.ensure_group()
    ids = publish(client, bridge_settings, [fresh_event(frame) for frame in range(3)])
    assert source.lag() == 3
    # read but not delivered: still three behind (pending)
    read_all(source)
    assert source.lag() == 3
    # two delivered: one behind, and the gauge says so
    source.ack(ids[:2])
    assert source.report_lag() == 1
    assert REGISTRY.get_sample_value("vigil_bridge_lag_events", {"bridge": "mqtt"}) == 1


def test_reading_stops_when_asked(client: redis.Redis, bridge_settings: Settings) -> None:
    # given a stop already requested and an event waiting
    source = BridgeSource(client, bridge_settings, "mqtt", MAX_AGE_S)
    source.ensure_group()
    publish(client, bridge_settings, [fresh_event(0)])
    stop = threading.Event()
    stop.set()
    # then read hands nothing out (the event stays for the next start)
    assert source.read(stop) == []
    assert source.lag() == 1


@pytest.mark.parametrize(
    ("bridge", "max_age_s", "expected"),
    [
        # a bridge that does not exist
        ("email", 60.0, "unknown bridge"),
        # a non-positive age
        ("mqtt", 0.0, "max_age_s"),
    ],
)
def test_bad_arguments_are_refused(
    client: redis.Redis, bridge_settings: Settings, bridge: str, max_age_s: float, expected: str
) -> None:
    with pytest.raises(ValueError, match=expected):
        BridgeSource(client, bridge_settings, bridge, max_age_s)


def test_redis_errors_surface_as_vigil_errors(bridge_settings: Settings) -> None:
    # given a Redis that does not answer
    dead = redis.Redis(
        host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    source = BridgeSource(dead, bridge_settings, "mqtt", MAX_AGE_S)
    # then every operation raises RedisUnavailableError, which the bridges ride out
    for operation in (source.ensure_group, lambda: source.read(threading.Event()), source.lag):
        with pytest.raises(RedisUnavailableError):
            operation()
    with pytest.raises(RedisUnavailableError):
        source.ack(["1-0"])


def test_events_keep_their_type(client: redis.Redis, bridge_settings: Settings) -> None:
    # given an unknown event and a track end
    source = BridgeSource(client, bridge_settings, "webhooks", MAX_AGE_S)
    source.ensure_group()
    unknown = fresh_event(0, identity_id=None, name=None, kind=EventType.UNKNOWN)
    ended = fresh_event(1, kind=EventType.TRACK_ENDED, duration_s=3.0)
    publish(client, bridge_settings, [unknown, ended])
    # then they come back as they were published
    assert [item.event for item in read_all(source)] == [unknown, ended]


@pytest.mark.parametrize(
    ("captured_at", "expected_s"),
    [
        ("2024-05-01T12:00:00+00:00", 1714564800.0),  # the capture time, readable
        ("not a time", 1700000000.5),  # unreadable: the stream id's time
    ],
)
def test_event_time_is_its_capture_time_or_its_stream_ids(captured_at: str, expected_s: float) -> None:
    # given an event and its stream id, when its time is asked for (max_age_s counts from it)
    event = make_event(frame=1, captured_at=captured_at)
    # then it is the capture time, or the stream id's milliseconds when that cannot be read
    assert event_time_s(event, "1700000000500-3") == pytest.approx(expected_s)
