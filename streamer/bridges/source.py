"""Where a bridge reads events: the events stream, through a consumer group of the bridge's own.

Each bridge (``mqtt``, ``webhooks``) has one group on ``streamer.events.stream``
(``vigil-bridge-<bridge>``) and reads it as one fixed consumer, so what it read and did not
acknowledge stays pending *with that consumer* across restarts: a restarted bridge first gets
its own pending entries again (``XREADGROUP ... 0``), then new ones (``>``). A bridge
acknowledges an entry only once it is delivered (or given up on and counted), so nothing is
skipped, and nothing acknowledged is read again. Consumers that see an event id twice (a
bridge killed between delivering and acknowledging) can drop the repeat: event ids are stable.

A new group starts at the stream's end: ``vigil run`` creates the enabled bridges' groups before
it starts the tracker, so a bridge started a moment later still gets every event of the run.

Entries that are not events (written by hand, or by a newer Vigil) are acknowledged, counted in
``vigil_bus_poison_entries_total`` and logged once. Given a ``max_age_s`` (the webhooks bridge),
events older than that when it reaches them (it was down, or its endpoints were) are acknowledged
and counted as dropped (``vigil_bridge_events_total{target="stream",outcome="dropped"}``), not
replayed. The MQTT bridge passes None and applies its age limit itself, because even a too-old
``track_ended`` must still end a track's presence.

The lag (``lag``) is what the group has not acknowledged: entries not yet read plus those read
and pending. It is 0 when the group does not exist (the bridge was never configured here).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import redis
from pydantic import ValidationError

from streamer import metrics
from streamer.events import EVENT_SCHEMA_VERSION, Event
from vigil.config import Settings
from vigil.stop import StopFlag
from vigil.streams import StreamEntry, StreamResponse, ensure_group, redis_errors, text

logger = logging.getLogger(__name__)

BRIDGES = ("mqtt", "webhooks")
"""The bridges there are: each one's name is its metric label and names its consumer group."""
GROUP_PREFIX = "vigil-bridge-"
# One bridge process per group reads as this one consumer, so its pending entries survive restarts.
CONSUMER = "bridge"
SOURCE_TARGET = "stream"
"""``target`` label of events dropped before any target saw them (too old)."""
# Redis 6.2 has no ``lag`` in XINFO GROUPS (nor does 7 after some deletions): then the entries
# after the group's last delivered id are counted by reading their ids, at most this many.
LAG_COUNT_LIMIT = 10_000


@dataclass(frozen=True)
class BridgeEvent:
    """An event as a bridge reads it: with its stream id, which ``BridgeSource.ack`` takes.

    Attributes:
        stream_id: The entry's id in the events stream (``<milliseconds>-<sequence>``).
        event: The event.
    """

    stream_id: str
    event: Event


def group_name(bridge: str) -> str:
    """The consumer group of ``bridge`` on the events stream."""
    return f"{GROUP_PREFIX}{bridge}"


class BridgeSource:
    """One bridge's reader of the events stream (one per process; not thread-safe).

    Args:
        client: Redis (the service's, where the events stream is).
        settings: Vigil's settings (``streamer.events.stream``).
        bridge: ``mqtt`` or ``webhooks``: names the group and labels the metrics.
        max_age_s: Events older than this (seconds since their capture) when read are dropped
            and counted; None keeps every event.

    Raises:
        ValueError: ``bridge`` is not one of ``BRIDGES``, or ``max_age_s`` is not positive.
    """

    def __init__(self, client: redis.Redis, settings: Settings, bridge: str, max_age_s: float | None) -> None:
        if bridge not in BRIDGES:
            raise ValueError(f"unknown bridge {bridge!r}; one of {', '.join(BRIDGES)}")
        if max_age_s is not None and max_age_s <= 0:
            raise ValueError(f"max_age_s must be positive, got {max_age_s}")
        self._client = client
        self.stream = settings.streamer.events.stream
        self.bridge = bridge
        self.group = group_name(bridge)
        self.max_age_s = max_age_s
        # Own pending entries come first, page by page from this id; None once they are all read.
        self._pending_after: str | None = "0-0"

    def use_connection(self, client: redis.Redis) -> None:
        """Read through ``client`` from now on (after a Redis outage: the embedded server has a new socket).

        The pending entries are read again first: those read before the outage and not
        acknowledged are delivered again rather than forgotten.
        """
        self._client = client
        self.rewind()

    def rewind(self) -> None:
        """Read this bridge's pending (unacknowledged) entries again before new ones."""
        self._pending_after = "0-0"

    def ensure_group(self) -> None:
        """Create the group (and the stream) if missing; a new group starts at the stream's end.

        Raises:
            RedisUnavailableError: Redis cannot be reached or refuses the write.
        """
        ensure_group(self._client, self.stream, self.group)

    def read(self, stop: StopFlag, count: int = 100, block_ms: int = 1000) -> list[BridgeEvent]:
        """The next events: first this bridge's pending entries, then new ones (waiting up to ``block_ms``).

        Entries that are not events, and events older than ``max_age_s``, are acknowledged,
        counted and left out, so a call may return fewer than ``count``, or none, before the
        stream's end. Returns nothing once ``stop`` is set.

        Raises:
            RedisUnavailableError: Redis cannot be reached.
        """
        if stop.is_set():
            return []
        if self._pending_after is not None:
            entries = self._read_group(self._pending_after, count, block_ms=None)
            if entries:
                self._pending_after = entries[-1][0]
                return self._usable(entries)
            self._pending_after = None  # every pending entry has been handed out again
            logger.debug("bridge %s: pending entries done; reading new events", self.bridge)
        return self._usable(self._read_group(">", count, block_ms))

    def ack(self, stream_ids: Sequence[str]) -> None:
        """Acknowledge entries: delivered (or given up on and counted); they are never read again.

        Raises:
            RedisUnavailableError: Redis cannot be reached or refuses the write.
        """
        if stream_ids:
            with redis_errors():
                self._client.xack(self.stream, self.group, *stream_ids)

    def lag(self) -> int:
        """Events in the stream this group has not acknowledged: not yet read, plus read and pending.

        0 when the stream or the group does not exist (the bridge is not configured here).

        Raises:
            RedisUnavailableError: Redis cannot be reached.
        """
        return group_lag(self._client, self.stream, self.group)

    def report_lag(self) -> int:
        """``lag``, also set on the ``vigil_bridge_lag_events`` gauge; returns it."""
        lag = self.lag()
        metrics.BRIDGE_LAG.labels(bridge=self.bridge).set(lag)
        return lag

    def _read_group(
        self, after: str, count: int, block_ms: int | None
    ) -> list[tuple[str, dict[bytes, bytes] | None]]:
        try:
            with redis_errors():
                response = cast(
                    StreamResponse,
                    self._client.xreadgroup(
                        self.group, CONSUMER, {self.stream: after}, count=count, block=block_ms
                    ),
                )
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The stream or the group is gone (Redis lost its data, or someone deleted the key):
            # start again from the end; what was written in between cannot be told apart any more.
            logger.warning(
                "bridge %s: the events stream has no group %s; creating it", self.bridge, self.group
            )
            self.ensure_group()
            self._pending_after = None
            return []
        return [(text(raw_id), fields) for _, entries in response or [] for raw_id, fields in entries]

    def _usable(self, entries: list[tuple[str, dict[bytes, bytes] | None]]) -> list[BridgeEvent]:
        """The events among ``entries``; the others (malformed, deleted, too old) acknowledged and counted."""
        usable: list[BridgeEvent] = []
        skipped: list[str] = []
        too_old = 0
        now = time.time()
        for stream_id, fields in entries:
            if not fields:  # deleted or trimmed while pending with this consumer: nothing to deliver
                metrics.POISON_ENTRIES.labels(stream=self.stream, reason="trimmed").inc()
                logger.warning(
                    "bridge %s: event %s was trimmed before it was delivered", self.bridge, stream_id
                )
                skipped.append(stream_id)
                continue
            try:
                event = Event.model_validate_json(fields[b"event"])
            except (KeyError, ValidationError, ValueError):
                metrics.POISON_ENTRIES.labels(stream=self.stream, reason="malformed").inc()
                logger.warning(
                    "bridge %s: skipping entry %s: not a valid schema-%d event",
                    self.bridge,
                    stream_id,
                    EVENT_SCHEMA_VERSION,
                )
                skipped.append(stream_id)
                continue
            if self.max_age_s is not None and now - event_time_s(event, stream_id) > self.max_age_s:
                too_old += 1
                skipped.append(stream_id)
                continue
            usable.append(BridgeEvent(stream_id, event))
        if too_old:
            metrics.BRIDGE_EVENTS.labels(bridge=self.bridge, target=SOURCE_TARGET, outcome="dropped").inc(
                too_old
            )
            logger.warning(
                "bridge %s: dropped %d event(s) older than %.0f s (bridges.%s.max_age_s)",
                self.bridge,
                too_old,
                self.max_age_s,
                self.bridge,
            )
        self.ack(skipped)
        return usable


def group_lag(client: redis.Redis, stream: str, group: str) -> int:
    """Entries of ``stream`` that ``group`` has not acknowledged (0 without the stream or the group).

    Raises:
        RedisUnavailableError: Redis cannot be reached.
    """
    with redis_errors():
        try:
            groups: list[dict[str, Any]] = client.xinfo_groups(stream)
        except redis.ResponseError:  # no such stream
            return 0
        found = next((entry for entry in groups if text(entry["name"]) == group), None)
        if found is None:
            return 0
        pending = int(found["pending"])
        lag = found.get("lag")  # Redis >= 7; None when it cannot tell (entries deleted meanwhile)
        if lag is None:
            after = "(" + text(found["last-delivered-id"])
            lag = len(
                cast(list[StreamEntry], client.xrange(stream, min=after, max="+", count=LAG_COUNT_LIMIT))
            )
    return int(lag) + pending


def event_time_s(event: Event, stream_id: str) -> float:
    """When the event's frame was captured (Unix seconds), the time ``max_age_s`` is counted from.

    Its stream id's time if ``captured_at`` is unreadable.
    """
    return captured_s(event.captured_at, int(stream_id.split("-", 1)[0]) / 1000.0)


def captured_s(captured_at: str, default_s: float) -> float:
    """An event's ``captured_at`` in Unix seconds; ``default_s`` if it is unreadable."""
    try:
        return datetime.fromisoformat(captured_at).timestamp()
    except ValueError:
        return default_s
