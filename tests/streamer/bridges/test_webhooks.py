"""The webhooks bridge end to end: events on the real events stream, a real HTTP receiver, real Redis.

``Receiver`` is Python's ``http.server`` on a free ``127.0.0.1`` port in a thread of its own: it
records every POST and answers what the test's ``answer`` says. The bridge runs in a thread
(``running_bridge``) with short back-off (``FAST_RETRIES``), exactly as ``vigil bridge webhooks`` runs it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import multiprocessing
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import cast

import pytest
import redis
from prometheus_client import REGISTRY

from streamer.bridges.source import SOURCE_TARGET, BridgeSource
from streamer.bridges.webhook_queue import QueuedEvent, WebhookQueue, WebhookQueueKeys
from streamer.bridges.webhooks import run_webhooks_bridge, webhooks_lag
from streamer.events import Event, EventPublisher, EventType, iso_time
from tests.conftest import stop_embedded
from tests.streamer.bridges.conftest import free_port
from tests.streamer.test_events import make_event
from tests.streamer.test_redis_errors import PrivateRedis
from vigil.config import Settings
from vigil.config.bridges import WebhookEndpoint, WebhooksBridgeConfig
from vigil.config.redis import RedisConfig
from vigil.errors import ConfigError
from vigil.retry import RetryPolicy
from vigil.streams import connect_redis

# Short pauses so that retries happen within a test: 50 ms, 100 ms ... at most 200 ms.
FAST_RETRIES = RetryPolicy(initial_s=0.05, max_s=0.2)
# A stopped bridge lets its requests in flight finish: at most the longest timeout_s used here
# (DEAD_TIMEOUT_S), with slack for a loaded machine.
DEAD_TIMEOUT_S = 15.0
STOP_S = DEAD_TIMEOUT_S + 20.0
Answer = Callable[[str, int], tuple[int, dict[str, str]]]
"""(event id, how many times this id was POSTed so far, this one included) -> (status, headers)."""


def verify(body: bytes, header: str, secret: str) -> bool:
    """The receiver's check of ``X-Vigil-Signature``, as docs/bridges.md gives it."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


@dataclass(frozen=True)
class Request:
    """One POST the receiver got: its event id header, body, headers (lower-case names) and its answer."""

    event_id: str
    body: bytes
    headers: dict[str, str]
    status: int
    at_s: float


class Receiver:
    """A real HTTP server recording POSTs; ``answer`` decides each reply (default: 200)."""

    def __init__(self, answer: Answer | None = None) -> None:
        self.requests: list[Request] = []
        self._answer = answer or (lambda event_id, nth: (200, {}))
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                event_id = self.headers.get("X-Vigil-Event-Id", "")
                with receiver._lock:
                    nth = 1 + sum(request.event_id == event_id for request in receiver.requests)
                    status, headers = receiver._answer(event_id, nth)
                    headers_seen = {name.lower(): value for name, value in self.headers.items()}
                    receiver.requests.append(Request(event_id, body, headers_seen, status, time.monotonic()))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # quiet
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def snapshot(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    def delivered(self) -> list[str]:
        """Event ids answered with a 2xx, once per such answer."""
        return [request.event_id for request in self.snapshot() if 200 <= request.status < 300]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@contextmanager
def black_hole() -> Iterator[str]:
    """The URL of an endpoint that accepts connections and never answers (each request times out)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)  # connections complete in the kernel's backlog; nobody reads them
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"


def with_webhooks(settings: Settings, endpoints: list[WebhookEndpoint], **options: float) -> Settings:
    """``settings`` with the webhooks bridge on, these endpoints, ``options`` (timeout_s: 5 s by default:
    a local receiver answers in milliseconds, even on a loaded machine)."""
    webhooks = WebhooksBridgeConfig.model_validate(
        {"enabled": True, "endpoints": endpoints, "timeout_s": 5.0, **options}
    )
    return settings.model_copy(update={"bridges": settings.bridges.model_copy(update={"webhooks": webhooks})})


@contextmanager
def running_bridge(settings: Settings, policy: RetryPolicy = FAST_RETRIES) -> Iterator[threading.Event]:
    """``run_webhooks_bridge`` in a thread until the block ends (then stopped, joined, its error raised)."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_webhooks_bridge(settings, stop, retry_policy=policy)
        except BaseException as exc:  # handed to the test below
            errors.append(exc)

    thread = threading.Thread(target=run, name="webhooks-bridge-under-test", daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(STOP_S)
        assert not thread.is_alive(), f"the bridge did not stop within {STOP_S} s of its stop flag"
    if errors:
        raise errors[0]


def connected(target: str) -> float | None:
    """``vigil_bridge_connected{bridge="webhooks", target}`` now."""
    return REGISTRY.get_sample_value("vigil_bridge_connected", {"bridge": "webhooks", "target": target})


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def bridge_count(target: str, outcome: str) -> float:
    """``vigil_bridge_events_total{bridge="webhooks", target, outcome}`` now."""
    labels = {"bridge": "webhooks", "target": target, "outcome": outcome}
    return REGISTRY.get_sample_value("vigil_bridge_events_total", labels) or 0.0


# --- fixtures and builders ----------------------------------------------------------------------

pytestmark = pytest.mark.redis

SECRET = "s3cret-for-tests"
# The id in a Home Assistant webhook's path: whoever knows it can trigger the automation.
PATH_SECRET = "ha-webhook-id-0123"
# Generous bounds for what takes milliseconds (or a few seconds of back-off), so that a loaded
# machine (3-5 times slower) cannot fail them; ``wait_for`` returns as soon as the condition holds.
ARRIVE_S = 30.0


@pytest.fixture
def client(bridge_settings: Settings) -> Iterator[redis.Redis]:
    redis_client = redis.Redis.from_url(str(bridge_settings.redis.url))
    yield redis_client
    redis_client.close()


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    """Start receivers: ``receivers(answer)``; each is closed at teardown."""
    started: list[Receiver] = []

    def start(answer: Answer | None = None) -> Receiver:
        started.append(Receiver(answer))
        return started[-1]

    yield start
    for receiver in started:
        receiver.close()


def endpoint(name: str, url: str, **fields: object) -> WebhookEndpoint:
    """A webhook endpoint; ``fields`` as in the settings (``secret``, ``filter``)."""
    return WebhookEndpoint.model_validate({"name": name, "url": url, **fields})


def fresh_event(frame: int, unknown: bool = False, age_s: float = 0.0) -> Event:
    """An event of its own track captured ``age_s`` ago; ``unknown``: of a face nobody is enrolled as."""
    who: dict[str, object] = {"identity_id": None, "name": None, "kind": EventType.UNKNOWN} if unknown else {}
    return make_event(frame=frame, captured_at=iso_time(time.time() - age_s), **who)  # type: ignore[arg-type]


def publish(client: redis.Redis, settings: Settings, events: list[Event]) -> None:
    """Write ``events`` to the events stream as the tracker does (the bridge's group first, as vigil run)."""
    BridgeSource(client, settings, "webhooks", None).ensure_group()
    publisher = EventPublisher(client, settings.streamer.events)
    for event in events:
        publisher.publish(event)


def queue_of(client: redis.Redis, settings: Settings, name: str) -> WebhookQueue:
    keys = WebhookQueueKeys.for_endpoint(settings.streamer.events.stream, name)
    webhooks = settings.bridges.webhooks
    return WebhookQueue(client, keys, webhooks.retry_queue_limit, webhooks.max_age_s)


def queued_ids(client: redis.Redis, queue: WebhookQueue) -> set[str]:
    members = cast(list[bytes], client.zrange(queue.keys.born, 0, -1))
    return {member.decode() for member in members}


# --- (a) delivery, headers, signature -----------------------------------------------------------


def test_each_event_reaches_the_receiver_once_signed(
    bridge_settings: Settings, client: redis.Redis, receivers: Callable[..., Receiver]
) -> None:
    # given: a signed endpoint and an unsigned one
    signed, unsigned = receivers(), receivers()
    settings = with_webhooks(
        bridge_settings, [endpoint("signed", signed.url, secret=SECRET), endpoint("plain", unsigned.url)]
    )
    events = [fresh_event(frame, unknown=frame % 2 == 1) for frame in range(5)]
    delivered_before = bridge_count("signed", "delivered")
    # when: the tracker publishes them while the bridge runs
    with running_bridge(settings):
        publish(client, settings, events)
        assert wait_for(lambda: len(signed.delivered()) == 5 and len(unsigned.delivered()) == 5, ARRIVE_S)
        time.sleep(0.3)  # anything sent twice would arrive by now
    # then: each event once, in order, with the event JSON as body, signed with the secret
    expected = [event.event_id for event in events]
    assert [request.event_id for request in signed.snapshot()] == expected, "each event once, in stream order"
    for request, event in zip(signed.snapshot(), events, strict=True):
        assert request.body == event.to_json().encode(), "the body is the event's JSON"
        assert Event.model_validate_json(request.body) == event
        assert request.headers["content-type"] == "application/json"
        assert verify(request.body, request.headers["x-vigil-signature"], SECRET), (
            "the documented check passes"
        )
        assert not verify(request.body + b" ", request.headers["x-vigil-signature"], SECRET), "it can fail"
        assert not verify(request.body, request.headers["x-vigil-signature"], "another secret")
    assert [request.event_id for request in unsigned.snapshot()] == expected
    assert all("x-vigil-signature" not in request.headers for request in unsigned.snapshot()), (
        "no secret: unsigned"
    )
    assert bridge_count("signed", "delivered") - delivered_before == 5
    assert queue_of(client, settings, "signed").size() == 0, "nothing left waiting"
    assert connected("signed") == 1


# --- (b) retries --------------------------------------------------------------------------------


def test_a_receiver_failing_twice_gets_each_event_once(
    bridge_settings: Settings, client: redis.Redis, receivers: Callable[..., Receiver]
) -> None:
    # given: a receiver that answers 500 to the first two POSTs of every event, then 200
    receiver = receivers(lambda event_id, nth: (500, {}) if nth <= 2 else (200, {}))
    settings = with_webhooks(bridge_settings, [endpoint("flaky", receiver.url)])
    events = [fresh_event(frame) for frame in range(3)]
    before = {
        outcome: bridge_count("flaky", outcome) for outcome in ("retried", "failed", "delivered", "dropped")
    }
    # when
    with running_bridge(settings):
        publish(client, settings, events)
        assert wait_for(lambda: len(receiver.delivered()) == 3, ARRIVE_S), receiver.snapshot()
        time.sleep(0.3)
    # then: each event delivered exactly once, after two failures each
    assert sorted(receiver.delivered()) == sorted(event.event_id for event in events)
    posts = [request.event_id for request in receiver.snapshot()]
    assert all(posts.count(event.event_id) == 3 for event in events), posts
    counts = {outcome: bridge_count("flaky", outcome) - before[outcome] for outcome in before}
    assert counts == {"retried": 6, "failed": 6, "delivered": 3, "dropped": 0}, "2 retries per event"


def test_retry_after_is_honoured(
    bridge_settings: Settings, client: redis.Redis, receivers: Callable[..., Receiver]
) -> None:
    # given: a receiver that asks for a second's rest (429, Retry-After: 1) once
    receiver = receivers(lambda event_id, nth: (429, {"Retry-After": "1"}) if nth == 1 else (200, {}))
    settings = with_webhooks(bridge_settings, [endpoint("busy", receiver.url)])
    # when
    with running_bridge(settings):
        publish(client, settings, [fresh_event(0)])
        assert wait_for(lambda: len(receiver.delivered()) == 1, ARRIVE_S)
    # then: the second attempt waited the second asked for, not the 50 ms back-off
    first, second = receiver.snapshot()
    assert second.at_s - first.at_s >= 0.95, f"retried after {second.at_s - first.at_s:.2f} s"


def test_an_event_is_dropped_after_max_attempts(
    bridge_settings: Settings, client: redis.Redis, receivers: Callable[..., Receiver]
) -> None:
    # given: a receiver that always fails, and 3 attempts allowed
    receiver = receivers(lambda event_id, nth: (503, {}))
    settings = with_webhooks(bridge_settings, [endpoint("down", receiver.url)], max_attempts=3)
    dropped_before = bridge_count("down", "dropped")
    # when
    with running_bridge(settings):
        publish(client, settings, [fresh_event(0)])
        assert wait_for(lambda: bridge_count("down", "dropped") - dropped_before == 1, ARRIVE_S)
        time.sleep(0.5)
    # then: three attempts, then given up and counted, and gone from the queue
    assert len(receiver.snapshot()) == 3
    assert queue_of(client, settings, "down").size() == 0


# --- (c) a dead endpoint ------------------------------------------------------------------------


def test_a_dead_endpoint_does_not_hold_up_a_healthy_one(
    bridge_settings: Settings, client: redis.Redis, receivers: Callable[..., Receiver]
) -> None:
    # given: an endpoint that never answers (each attempt takes the 15 s timeout), with room for 3
    # waiting events, and a healthy endpoint
    healthy = receivers()
    with black_hole() as dead_url:
        settings = with_webhooks(
            bridge_settings,
            [endpoint("dead", dead_url), endpoint("healthy", healthy.url)],
            retry_queue_limit=3,
            max_attempts=100,
            timeout_s=DEAD_TIMEOUT_S,
        )
        events = [fresh_event(frame, age_s=10 - frame) for frame in range(8)]  # oldest first
        dropped_before = bridge_count("dead", "dropped")
        dead_failed_before = bridge_count("dead", "failed")
        # when
        with running_bridge(settings):
            publish(client, settings, events)
            # then: the healthy endpoint gets every event while the dead one's first request still
            # hangs (it takes milliseconds; one at a time behind the dead one would take 8 timeouts)
            assert wait_for(lambda: len(healthy.delivered()) == 8, DEAD_TIMEOUT_S - 3), healthy.snapshot()
            assert bridge_count("dead", "failed") == dead_failed_before, (
                "the dead one's request timed out first"
            )
            queue = queue_of(client, settings, "dead")
            # and the dead one keeps the newest 3 waiting, the 5 oldest dropped and counted
            assert wait_for(lambda: bridge_count("dead", "dropped") - dropped_before == 5, ARRIVE_S)
            assert queued_ids(client, queue) == {event.event_id for event in events[-3:]}
            # and its lag shows the 3 it has not got, though the stream is read to the end
            assert wait_for(lambda: webhooks_lag(client, settings) == 3, ARRIVE_S), webhooks_lag(
                client, settings
            )
            assert wait_for(
                lambda: REGISTRY.get_sample_value("vigil_bridge_lag_events", {"bridge": "webhooks"}) == 3,
                ARRIVE_S,
            )
    assert healthy.delivered() == [event.event_id for event in events]


# --- (d) stopping and restarting the bridge -----------------------------------------------------


def test_a_restarted_bridge_loses_and_repeats_nothing(
    bridge_settings: Settings, client: redis.Redis, receivers: Callable[..., Receiver]
) -> None:
    # given: a slow receiver (50 ms an answer), and 20 events published
    def slow(event_id: str, nth: int) -> tuple[int, dict[str, str]]:
        time.sleep(0.05)
        return 200, {}

    receiver = receivers(slow)
    settings = with_webhooks(bridge_settings, [endpoint("slow", receiver.url)])
    first, second = (
        [fresh_event(frame) for frame in range(20)],
        [fresh_event(frame) for frame in range(20, 30)],
    )
    # when: the bridge is stopped mid-run, more events come while it is down, and a new one starts
    with running_bridge(settings):
        publish(client, settings, first)
        assert wait_for(lambda: len(receiver.delivered()) >= 5, ARRIVE_S)
    stopped_with = len(receiver.delivered())
    assert stopped_with < 20, "stopped mid-run (some events still waiting)"
    publish(client, settings, second)
    with running_bridge(settings):
        assert wait_for(lambda: len(receiver.delivered()) == 30, ARRIVE_S), len(receiver.delivered())
        time.sleep(0.3)
    # then: every event exactly once, in order
    assert receiver.delivered() == [event.event_id for event in first + second]


def test_events_queued_but_not_acknowledged_are_sent_once(
    bridge_settings: Settings, client: redis.Redis, receivers: Callable[..., Receiver]
) -> None:
    # given: a bridge that read 3 events and queued them, and died before acknowledging them on
    # the stream (its first two steps, done here as it does them)
    receiver = receivers()
    settings = with_webhooks(bridge_settings, [endpoint("once", receiver.url)])
    events = [fresh_event(frame) for frame in range(3)]
    publish(client, settings, events)
    source = BridgeSource(client, settings, "webhooks", settings.bridges.webhooks.max_age_s)
    batch = source.read(threading.Event(), count=10, block_ms=100)
    assert len(batch) == 3
    queued = [QueuedEvent(entry.event.event_id, entry.event.to_json(), time.time()) for entry in batch]
    queue_of(client, settings, "once").enqueue(queued, time.time())
    # when: a bridge starts again: it reads them again (still pending) and finds them queued
    with running_bridge(settings):
        assert wait_for(lambda: len(receiver.delivered()) == 3, ARRIVE_S)
        assert wait_for(lambda: source.lag() == 0, ARRIVE_S), "acknowledged this time"
        time.sleep(0.3)
    # then: each sent once
    assert receiver.delivered() == [event.event_id for event in events]


def _bridge_process(settings: Settings) -> None:
    """A bridge in a process of its own, to be killed (the test's short back-off)."""
    run_webhooks_bridge(settings, multiprocessing.Event(), retry_policy=FAST_RETRIES)


def test_a_killed_bridge_loses_nothing_and_repeats_at_most_the_request_in_flight(
    bridge_settings: Settings, client: redis.Redis, receivers: Callable[..., Receiver]
) -> None:
    # given: a bridge process delivering 30 events to a slow receiver (20 ms an answer)
    def slow(event_id: str, nth: int) -> tuple[int, dict[str, str]]:
        time.sleep(0.02)
        return 200, {}

    receiver = receivers(slow)
    # A second's timeout (its 20 ms answers have ample slack): the request in flight at the kill is
    # due again 8 s later (its lease, 3 x timeout_s + 5 s).
    settings = with_webhooks(bridge_settings, [endpoint("killed", receiver.url)], timeout_s=1.0)
    events = [fresh_event(frame) for frame in range(30)]
    publish(client, settings, [])
    process = multiprocessing.get_context("spawn").Process(target=_bridge_process, args=(settings,))
    process.start()
    try:
        publish(client, settings, events)
        assert wait_for(lambda: len(receiver.delivered()) >= 5, 2 * ARRIVE_S)  # the process starts slowly
    finally:
        # when: it is killed mid-run (SIGKILL: no clean-up at all)
        process.kill()
        process.join(5)
    assert len(receiver.delivered()) < 30, "killed mid-run"
    # and another bridge takes over
    with running_bridge(settings):
        assert wait_for(lambda: len(set(receiver.delivered())) == 30, ARRIVE_S), receiver.delivered()
        # the event taken by the killed bridge waits out its lease, then goes again: nothing is stuck
        assert wait_for(lambda: queue_of(client, settings, "killed").size() == 0, ARRIVE_S)
        time.sleep(0.3)
    # then: nothing lost; only the request answered just before the kill may come twice, with its id
    delivered = receiver.delivered()
    assert set(delivered) == {event.event_id for event in events}
    assert len(delivered) - len(set(delivered)) <= 1, "at most the request in flight is repeated"


def test_the_bridge_rides_out_a_full_redis(
    bridge_settings: Settings, receivers: Callable[..., Receiver], tmp_path: Path
) -> None:
    # given: events on a Redis of the test's own, which then fills up (it refuses every write)
    server = PrivateRedis(tmp_path / "private-redis")
    try:
        receiver = receivers()
        settings = with_webhooks(
            bridge_settings.model_copy(update={"redis": RedisConfig(url=server.url)}),
            [endpoint("patient", receiver.url)],
        )
        events = [fresh_event(frame) for frame in range(3)]
        publish(server.client, settings, events)
        server.fill_up()
        # when: the bridge runs on the full Redis, then room is made
        with running_bridge(settings):
            time.sleep(1.5)
            assert receiver.delivered() == [], "nothing delivered that could not be queued first"
            server.make_room()
            assert wait_for(lambda: len(receiver.delivered()) == 3, ARRIVE_S)
            time.sleep(0.3)
        # then: each event once, and all acknowledged
        assert receiver.delivered() == [event.event_id for event in events]
        source = BridgeSource(server.client, settings, "webhooks", None)
        assert source.lag() == 0
    finally:
        server.stop()


def test_the_bridge_rides_out_a_restart_of_the_embedded_redis(
    bridge_settings: Settings, receivers: Callable[..., Receiver], tmp_path: Path
) -> None:
    # given: the embedded Redis, and an endpoint failing (500) until told otherwise, so that events
    # wait in its queue
    healthy = threading.Event()
    receiver = receivers(lambda event_id, nth: (200, {}) if healthy.is_set() else (500, {}))
    home = tmp_path / "home"
    settings = with_webhooks(
        bridge_settings.model_copy(update={"redis": RedisConfig(url=None), "home": home}),
        [endpoint("durable", receiver.url)],
        max_attempts=100,
    )
    client = connect_redis(settings.redis, home)
    events = [fresh_event(frame) for frame in range(3)]
    try:
        with running_bridge(settings):
            publish(client, settings, events[:2])
            assert wait_for(lambda: len(receiver.snapshot()) >= 2, ARRIVE_S), "tried and failed"
            # when: the server stops (its append-only file keeps the queue) and starts again
            stop_embedded(client)
            client = connect_redis(settings.redis, home)
            publish(client, settings, events[2:])
            healthy.set()
            # then: the bridge reconnects, and each event arrives once
            assert wait_for(lambda: len(receiver.delivered()) == 3, ARRIVE_S), receiver.snapshot()
            time.sleep(0.3)
        assert sorted(receiver.delivered()) == sorted(event.event_id for event in events)
    finally:
        stop_embedded(client)


# --- (e) filters --------------------------------------------------------------------------------


def test_an_unknown_only_endpoint_gets_only_unknown_faces(
    bridge_settings: Settings, client: redis.Redis, receivers: Callable[..., Receiver]
) -> None:
    # given: an endpoint for unknown faces only, and one with the default filter
    alerts, everything = receivers(), receivers()
    settings = with_webhooks(
        bridge_settings,
        [endpoint("alerts", alerts.url, filter={"unknown_only": True}), endpoint("all", everything.url)],
    )
    events = [fresh_event(frame, unknown=frame in (1, 3)) for frame in range(5)]
    filtered_before = bridge_count("alerts", "filtered")
    # when
    with running_bridge(settings):
        publish(client, settings, events)
        assert wait_for(lambda: len(everything.delivered()) == 5 and len(alerts.delivered()) == 2, ARRIVE_S)
        time.sleep(0.3)
    # then
    assert alerts.delivered() == [events[1].event_id, events[3].event_id]
    assert bridge_count("alerts", "filtered") - filtered_before == 3
    assert everything.delivered() == [event.event_id for event in events]


# --- (f) refused for good -----------------------------------------------------------------------


def test_a_4xx_is_dropped_counted_and_not_retried(
    bridge_settings: Settings,
    client: redis.Redis,
    receivers: Callable[..., Receiver],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given: an endpoint answering 404 to everything
    receiver = receivers(lambda event_id, nth: (404, {}))
    settings = with_webhooks(bridge_settings, [endpoint("gone", receiver.url)])
    before = {
        outcome: bridge_count("gone", outcome) for outcome in ("retried", "failed", "delivered", "dropped")
    }
    # when
    with caplog.at_level(logging.WARNING, logger="streamer.bridges"), running_bridge(settings):
        publish(client, settings, [fresh_event(frame) for frame in range(3)])
        assert wait_for(lambda: bridge_count("gone", "dropped") - before["dropped"] == 3, ARRIVE_S)
        time.sleep(0.5)  # a retry would come within 50-200 ms
    # then: each tried once, dropped and counted, logged once
    assert len(receiver.snapshot()) == 3, "never retried"
    counts = {outcome: bridge_count("gone", outcome) - before[outcome] for outcome in before}
    assert counts == {"retried": 0, "failed": 3, "delivered": 0, "dropped": 3}
    refusals = [record for record in caplog.records if "refused" in record.getMessage()]
    assert len(refusals) == 1, "logged once per endpoint and status"
    assert "HTTP 404" in refusals[0].getMessage()
    assert queue_of(client, settings, "gone").size() == 0


# --- (g) too old --------------------------------------------------------------------------------


def test_events_too_old_are_dropped_not_delivered(
    bridge_settings: Settings, client: redis.Redis, receivers: Callable[..., Receiver]
) -> None:
    # given: events may be 6 s old (ample time to read, deliver and queue a fresh one on a loaded
    # machine); one is an hour old when published, the other captured as it is published; an
    # endpoint that refuses connections keeps the fresh one waiting until it is too old too
    receiver = receivers()
    refused_url = f"http://127.0.0.1:{free_port()}/hook"
    max_age_s = 6.0
    settings = with_webhooks(
        bridge_settings,
        [endpoint("live", receiver.url), endpoint("refusing", refused_url)],
        max_age_s=max_age_s,
    )
    old = fresh_event(0, age_s=3600)
    stream_dropped = (
        REGISTRY.get_sample_value(
            "vigil_bridge_events_total", {"bridge": "webhooks", "target": SOURCE_TARGET, "outcome": "dropped"}
        )
        or 0.0
    )
    waiting_dropped = bridge_count("refusing", "dropped")
    # when
    with running_bridge(settings):
        fresh = fresh_event(1)
        publish(client, settings, [old, fresh])
        assert wait_for(lambda: len(receiver.delivered()) == 1, max_age_s)
        # then: the fresh event waits at the refusing endpoint until it is 6 s old, then is dropped
        queue = queue_of(client, settings, "refusing")
        assert queued_ids(client, queue) == {fresh.event_id}
        assert wait_for(lambda: bridge_count("refusing", "dropped") - waiting_dropped == 1, ARRIVE_S)
        assert queue.size() == 0
    assert receiver.delivered() == [fresh.event_id], "the hour-old event is never sent"
    now_dropped = REGISTRY.get_sample_value(
        "vigil_bridge_events_total", {"bridge": "webhooks", "target": SOURCE_TARGET, "outcome": "dropped"}
    )
    assert (now_dropped or 0.0) - stream_dropped == 1, "the hour-old one counted as dropped on reading"


# --- start-up checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoints", "message"),
    [
        ([], "has no endpoints"),  # nothing to deliver to
        (
            [{"name": "a", "url": "http://127.0.0.1:9/x", "secret": ""}],
            "has an empty secret",
        ),  # signs nothing
        (
            [{"name": "ha", "url": f"http://127.0.0.1:9/api/webhook/{PATH_SECRET}\x7f"}],
            "URL 'http://127.0.0.1:9/\\*\\*\\*' is not usable",
        ),  # a control character httpx refuses, in a path that is the secret: not shown
    ],
)
def test_bad_settings_are_refused_in_one_line(
    bridge_settings: Settings, endpoints: list[dict[str, object]], message: str
) -> None:
    webhooks = WebhooksBridgeConfig.model_validate({"endpoints": endpoints})
    settings = bridge_settings.model_copy(
        update={"bridges": bridge_settings.bridges.model_copy(update={"webhooks": webhooks})}
    )
    with pytest.raises(ConfigError, match=message) as raised:
        run_webhooks_bridge(settings, threading.Event())
    assert "\n" not in str(raised.value)
    assert PATH_SECRET not in str(raised.value), "the URL's path is shown"


def test_logs_never_show_a_webhook_url_s_path(
    bridge_settings: Settings, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # given: a Home Assistant style endpoint (the id in its path is the secret) that refuses
    # connections, so that the bridge logs its start and the endpoint's failure
    port = free_port()
    settings = with_webhooks(
        bridge_settings, [endpoint("ha", f"http://127.0.0.1:{port}/api/webhook/{PATH_SECRET}")]
    )
    failed_before = bridge_count("ha", "failed")
    # when: an event is published and the bridge tries to deliver it
    with caplog.at_level(logging.DEBUG, logger="streamer.bridges"), running_bridge(settings):
        publish(client, settings, [fresh_event(0)])
        assert wait_for(lambda: bridge_count("ha", "failed") - failed_before >= 2, ARRIVE_S)
    # then: the start and failure lines name the endpoint by host and port only, at every level
    messages = [record.getMessage() for record in caplog.records]
    assert not [message for message in messages if PATH_SECRET in message], "a log line shows the secret"
    shown = f"ha (http://127.0.0.1:{port}/***)"
    assert any("delivering to" in message and shown in message for message in messages), messages
    assert any(f"webhook ha (http://127.0.0.1:{port}/***)" in message for message in messages), messages


def test_a_host_that_does_not_resolve_is_retried_not_refused(
    bridge_settings: Settings, client: redis.Redis
) -> None:
    # given: an endpoint whose host name does not resolve (.invalid never does, RFC 2606)
    settings = with_webhooks(bridge_settings, [endpoint("nxdomain", "http://vigil-test.invalid/hook")])
    retried_before = bridge_count("nxdomain", "retried")
    # when: the bridge runs, it keeps the event and retries
    with running_bridge(settings):
        publish(client, settings, [fresh_event(0)])
        assert wait_for(lambda: bridge_count("nxdomain", "retried") - retried_before >= 2, ARRIVE_S)
        assert queue_of(client, settings, "nxdomain").size() == 1
    assert connected("nxdomain") == 0, "no answer"
