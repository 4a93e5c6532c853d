"""The webhooks bridge: every event POSTed to the configured HTTP endpoints, signed, with retries.

    events stream --(group vigil-bridge-webhooks)--> filter per endpoint --> endpoint's queue in Redis
                                                                      (then the stream entry is acked)
    endpoint's queue --(one thread per endpoint)--> POST --> 2xx: delivered
                                                        \\-> 5xx/408/429/no answer: again later (back-off)
                                                        \\-> other 4xx, 3xx: dropped (refused for good)

An event is acknowledged on the stream only once it is in the durable queue of every endpoint
whose filter passes it (``streamer.bridges.webhook_queue``), so a crash loses nothing; each
endpoint delivers from its own queue in its own thread, so a dead one never holds up the others.
Its queue holds at most ``retry_queue_limit`` events, none older than ``max_age_s``, and an event
is tried at most ``max_attempts`` times (``streamer.bridges.webhook_endpoint``). While an endpoint
keeps up, the reader leaves events in the stream rather than overfill its queue (a burst, catching
up after the bridge was down); the queue of one that fails or hangs drops its oldest events instead.
Delivery is at least once: a bridge killed between the receiver's 2xx and its own note of it
sends that one event again, with the same ``X-Vigil-Event-Id``.

Metrics: ``vigil_bridge_events_total{bridge="webhooks", target=<endpoint>, outcome}`` with outcome
``filtered``, ``delivered``, ``failed`` (an attempt that failed), ``retried`` (another attempt
scheduled) and ``dropped`` (given up: refused, out of attempts, queue full, too old);
``vigil_bridge_lag_events`` (``webhooks_lag``: the stream's unacknowledged events plus the longest
queue, as an event queued is not yet delivered) and ``vigil_bridge_connected``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import httpx2
import redis

from streamer import metrics
from streamer.bridges.filters import event_passes
from streamer.bridges.source import BridgeEvent, BridgeSource, captured_s, group_lag, group_name
from streamer.bridges.webhook_endpoint import BRIDGE, EitherStop, EndpointDelivery
from streamer.bridges.webhook_queue import QueuedEvent, WebhookQueue, WebhookQueueKeys, queued_events
from vigil.config import Settings
from vigil.errors import ConfigError, RedisErrorKind, RedisUnavailableError
from vigil.retry import REDIS_RETRY_POLICY, Backoff, RetryPolicy
from vigil.stop import StopFlag, pause
from vigil.streams import connect_redis

logger = logging.getLogger(__name__)

# Pauses between attempts at one event, and between probes of a dead endpoint: 1, 2, 4 ... s
# (each jittered down to half), at most 5 minutes, so an endpoint back after an outage gets its
# backlog within minutes; the default 8 attempts span one to two minutes of failures.
RETRY_POLICY = RetryPolicy(initial_s=1.0, max_s=300.0)
READ_BATCH = 100
READ_BLOCK_MS = 1000
ROOM_POLL_S = 0.02


def check_webhooks_settings(settings: Settings) -> None:
    """Refuse, in one line, what can be told wrong before any request (malformed URLs are the settings').

    A host name that does not resolve is not refused: DNS may come back (the bridge logs a warning
    and retries).

    Raises:
        ConfigError: No endpoints, an empty secret, or a URL httpx cannot use.
    """
    webhooks = settings.bridges.webhooks
    if not webhooks.endpoints:
        raise ConfigError(
            "bridges.webhooks has no endpoints; list at least one {name, url} under "
            "bridges.webhooks.endpoints"
        )
    for endpoint in webhooks.endpoints:
        where = f"bridges.webhooks endpoint {endpoint.name!r}"
        if endpoint.secret is not None and not endpoint.secret.get_secret_value():
            raise ConfigError(
                f"{where} has an empty secret; set one, or remove `secret` to send unsigned requests"
            )
        try:
            httpx2.URL(endpoint.url)
        except httpx2.InvalidURL as exc:
            raise ConfigError(f"{where}: URL {endpoint.shown_url!r} is not usable ({exc}); fix it") from None


def run_webhooks_bridge(
    settings: Settings, stop: StopFlag, *, retry_policy: RetryPolicy = RETRY_POLICY
) -> None:
    """Deliver events to the endpoints of ``settings.bridges.webhooks`` until ``stop`` is set.

    Redis outages are ridden out (with back-off, reconnecting), endpoint outages too (see the module
    docstring).

    Args:
        settings: Where Redis and the events stream are, and the endpoints.
        stop: Set to stop; the requests in flight finish first (at most ``timeout_s``).
        retry_policy: Pauses between attempts (tests shorten them).

    Raises:
        ConfigError: See :func:`check_webhooks_settings`.
    """
    check_webhooks_settings(settings)
    client = _connect(settings, stop)
    if client is None:
        return
    bridge = WebhooksBridge(client, settings, retry_policy)
    try:
        bridge.run(stop, reconnect=lambda: _connect(settings, stop))
    finally:
        bridge.client.close()


def webhooks_lag(client: redis.Redis, settings: Settings) -> int:
    """Events the webhooks bridge has not delivered everywhere yet: those in the events stream it has
    not acknowledged, plus the queue of the endpoint furthest behind (``vigil_bridge_lag_events``).

    Raises:
        RedisUnavailableError: Redis cannot be reached.
    """
    stream = settings.streamer.events.stream
    names = [endpoint.name for endpoint in settings.bridges.webhooks.endpoints]
    queued = queued_events(client, stream, names)
    return group_lag(client, stream, group_name(BRIDGE)) + max(queued.values(), default=0)


class WebhooksBridge:
    """The stream reader and one delivery thread per endpoint (see the module docstring)."""

    def __init__(
        self, client: redis.Redis, settings: Settings, retry_policy: RetryPolicy = RETRY_POLICY
    ) -> None:
        self.client = client
        self._settings = settings
        self._config = settings.bridges.webhooks
        stream = settings.streamer.events.stream
        self._endpoints = [
            EndpointDelivery(
                endpoint,
                settings.bridges.endpoint_filter(endpoint),
                WebhookQueue(
                    client,
                    WebhookQueueKeys.for_endpoint(stream, endpoint.name),
                    self._config.retry_queue_limit,
                    self._config.max_age_s,
                ),
                self._config,
                retry_policy,
            )
            for endpoint in self._config.endpoints
        ]

    def run(self, stop: StopFlag, reconnect: Callable[[], redis.Redis | None] | None = None) -> None:
        """Read, queue and deliver until ``stop`` is set; then let the requests in flight finish.

        Args:
            stop: Set to stop.
            reconnect: Opens a new connection after a Redis outage (None: keep this one: redis-py
                reconnects to a server by URL by itself, not to a restarted embedded one).
        """
        source = BridgeSource(self.client, self._settings, BRIDGE, self._config.max_age_s)
        halt = threading.Event()
        threads = [
            threading.Thread(
                target=endpoint.run, args=(EitherStop(stop, halt),), name=f"vigil.webhooks:{endpoint.name}"
            )
            for endpoint in self._endpoints
        ]
        for thread in threads:
            thread.start()
        logger.info(
            "webhooks bridge delivering to %s",
            ", ".join(f"{endpoint.name} ({endpoint.shown_url})" for endpoint in self._endpoints),
        )
        try:
            self._read_loop(source, stop, reconnect)
        finally:
            halt.set()
            for endpoint in self._endpoints:
                endpoint.wake.set()
            for thread in threads:
                thread.join()
            for endpoint in self._endpoints:
                endpoint.close()

    def _read_loop(
        self, source: BridgeSource, stop: StopFlag, reconnect: Callable[[], redis.Redis | None] | None
    ) -> None:
        backoff = Backoff(REDIS_RETRY_POLICY)
        grouped = False
        count = min(READ_BATCH, self._config.retry_queue_limit)
        while not stop.is_set():
            try:
                if not grouped:
                    source.ensure_group()
                    grouped = True
                if not self._wait_for_room(count, stop):
                    continue
                batch = source.read(stop, count=count, block_ms=READ_BLOCK_MS)
                if batch:
                    self._queue(batch)
                    source.ack([entry.stream_id for entry in batch])  # only once queued everywhere
                metrics.BRIDGE_LAG.labels(bridge=BRIDGE).set(source.lag() + self._most_queued())
                backoff.succeeded()
            except RedisUnavailableError as exc:  # RedisRefusedError too: nothing acked, read again
                metrics.REDIS_ERRORS.labels(component="bridge", error=exc.kind.value).inc()
                delay_s = backoff.failed()
                logger.warning("webhooks bridge: %s; retrying in %.1f s", exc, delay_s)
                source.rewind()  # what was read and not queued is read again
                lost = exc.kind in (RedisErrorKind.CONNECTION, RedisErrorKind.TIMEOUT)
                if pause(stop, delay_s) or reconnect is None or not lost:  # full, loading: same server
                    continue
                client = reconnect()
                if client is not None:
                    self._use_connection(client, source)

    def _most_queued(self) -> int:
        return max((endpoint.queue.size() for endpoint in self._endpoints), default=0)

    def _wait_for_room(self, count: int, stop: StopFlag) -> bool:
        """Wait until ``count`` more events fit the queue of every endpoint that keeps up; False if stopped.

        The stream, not the queue, is where events wait for an endpoint that delivers but is behind:
        its queue would drop them. An endpoint that fails or hangs holds up no one: its queue drops
        its oldest events instead.
        """
        while not stop.is_set():
            if all(
                endpoint.queue.size() + count <= endpoint.queue.limit
                for endpoint in self._endpoints
                if endpoint.keeping_up()
            ):
                return True
            pause(stop, ROOM_POLL_S)
        return False

    def _queue(self, batch: list[BridgeEvent]) -> None:
        """Put each event in the queue of every endpoint whose filter passes it."""
        now_s = time.time()
        for endpoint in self._endpoints:
            events = [
                QueuedEvent(
                    entry.event.event_id, entry.event.to_json(), captured_s(entry.event.captured_at, now_s)
                )
                for entry in batch
                if event_passes(entry.event, endpoint.rule)
            ]
            if len(events) < len(batch):
                endpoint.count("filtered", len(batch) - len(events))
            result = endpoint.queue.enqueue(events, now_s)
            if result.repeated:
                logger.debug(
                    "webhook %s: %d events were queued before; not again", endpoint.name, result.repeated
                )
            if result.dropped:
                endpoint.count("dropped", len(result.dropped))
                logger.warning(
                    "webhook %s: %d events waiting, the limit (bridges.webhooks.retry_queue_limit); "
                    "dropped the %d oldest",
                    endpoint.name, endpoint.queue.limit, len(result.dropped),
                )  # fmt: skip
            if result.added:
                endpoint.wake.set()

    def _use_connection(self, client: redis.Redis, source: BridgeSource) -> None:
        old, self.client = self.client, client
        source.use_connection(client)
        for endpoint in self._endpoints:
            endpoint.queue.use_connection(client)
        old.close()


def _connect(settings: Settings, stop: StopFlag) -> redis.Redis | None:
    """A connection to Redis, retried with back-off until one answers; None once ``stop`` is set."""
    backoff = Backoff(REDIS_RETRY_POLICY)
    while not stop.is_set():
        try:
            return connect_redis(settings.redis, settings.home)
        except RedisUnavailableError as exc:
            delay_s = backoff.failed()
            logger.warning("webhooks bridge: %s; retrying in %.1f s", exc, delay_s)
            pause(stop, delay_s)
    return None
