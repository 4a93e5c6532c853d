"""The tracker service: worker results in frame order → tracks → events on Redis.

Workers finish frames out of order (several workers, batches across cameras); tracks need
them in order. ``ReorderBuffer`` releases each camera's results by frame number, waiting
up to ``tracker.reorder_window_ms`` for a missing frame before counting it as dropped
(trimmed from a full bus). Duplicates and frames that arrive too late are discarded, so a
frame can never produce events twice.

``recognized`` events also pass a cooldown kept in Redis (``SET NX PX`` per camera and
person): a person who leaves and comes back within ``tracker.cooldown_s`` is the same
visit, even across a restart of the tracker.

Once an ``unknown`` or ``track_ended`` event is published, its track's outcome goes to
``streamer.learning`` (unknown faces kept, template aging).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

import redis

from indexer.gallery import Gallery
from streamer import metrics
from streamer.analysis import FrameResult
from streamer.events import Event, EventPublisher, EventType
from streamer.learning import TrackLearning
from streamer.track_attributes import TrackAttributes
from streamer.tracking import CameraTracker
from vigil.config import Settings
from vigil.stop import StopFlag
from vigil.streams import StreamResponse, ensure_group, redis_errors

logger = logging.getLogger(__name__)

TRACKER_GROUP = "tracker"
TRACKER_CONSUMER = "tracker"
_READ_BLOCK_MS = 100


@dataclass
class _CameraOrder:
    next_number: int | None = None
    waiting: dict[int, tuple[FrameResult, str, float]] = field(default_factory=dict)


class ReorderBuffer:
    """Releases each camera's results in frame order (see the module docstring)."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._cameras: dict[str, _CameraOrder] = {}

    def add(self, result: FrameResult, entry_id: str, now: float) -> bool:
        """Hold ``result``; False (and nothing held) when it is a duplicate or too late."""
        order = self._cameras.setdefault(result.camera, _CameraOrder())
        if order.next_number is not None and result.number < order.next_number:
            return False
        if result.number in order.waiting:
            return False
        order.waiting[result.number] = (result, entry_id, now)
        return True

    def release(self, now: float) -> list[tuple[FrameResult, str, int]]:
        """Results ready to track, in order, with how many frames were skipped before each."""
        ready: list[tuple[FrameResult, str, int]] = []
        for order in self._cameras.values():
            while order.waiting:
                number = min(order.waiting)
                result, entry_id, arrived = order.waiting[number]
                in_order = order.next_number is not None and number == order.next_number
                if not in_order and now - arrived < self.window_s:
                    break
                skipped = 0 if order.next_number is None else number - order.next_number
                del order.waiting[number]
                order.next_number = number + 1
                ready.append((result, entry_id, skipped))
        return ready


class TrackerService:
    """Consumes worker results, tracks faces per camera and publishes events.

    Args:
        client: Redis connection.
        settings: The service's settings.
        run_token: Short id of this run, part of every track id.
        finish_after: When set, return once every one of these cameras has ended (file sources).
        gallery: Where stream learning stores unknowns and aging templates (default: the
            gallery of ``client``).
    """

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        run_token: str,
        finish_after: set[str] | None = None,
        gallery: Gallery | None = None,
    ) -> None:
        self._client = client
        self.settings = settings
        self.config = settings.streamer
        self.run_token = run_token
        self.publisher = EventPublisher(client, settings.streamer.events)
        self.buffer = ReorderBuffer(settings.streamer.tracker.reorder_window_ms / 1000)
        self.trackers: dict[str, CameraTracker] = {}
        self._attributes = TrackAttributes(settings.home) if settings.streamer.tracker.attributes else None
        self.finish_after = finish_after
        self.ended: set[str] = set()
        self._last_result_at: dict[str, tuple[float, float]] = {}  # camera -> (wall time, capture time)
        gallery = gallery if gallery is not None else Gallery(client)
        self.learning = TrackLearning(gallery, settings.indexer, settings.streamer.tracker)

    def use_connection(self, client: redis.Redis) -> None:
        """Carry on with a new connection (after a Redis outage), keeping the open tracks."""
        self._client = client
        self.publisher = EventPublisher(client, self.config.events)
        gallery = Gallery(client, self.learning.gallery.namespace)
        self.learning = TrackLearning(gallery, self.settings.indexer, self.config.tracker)

    def ensure_group(self) -> None:
        ensure_group(self._client, self.config.bus.faces_stream, TRACKER_GROUP)

    def run(self, stop: StopFlag) -> None:
        """Track until ``stop`` is set (then end every track) or every awaited camera has ended."""
        self.ensure_group()
        self._consume("0")  # results left unacknowledged by a previous tracker
        while not stop.is_set() and not self.finished:
            self._consume(">")
        self._publish(self._end_everything())

    @property
    def finished(self) -> bool:
        return self.finish_after is not None and self.finish_after <= self.ended

    def _consume(self, start: str) -> None:
        with redis_errors():
            response = cast(
                StreamResponse,
                self._client.xreadgroup(
                    TRACKER_GROUP,
                    TRACKER_CONSUMER,
                    {self.config.bus.faces_stream: start},
                    count=256,
                    block=None if start == "0" else _READ_BLOCK_MS,
                ),
            )
        now = time.monotonic()
        discarded: list[str] = []
        for _, entries in response or []:
            for raw_id, fields in entries:
                entry_id = raw_id.decode()
                if not self.buffer.add(FrameResult.from_fields(fields), entry_id, now):
                    discarded.append(entry_id)
        done = discarded + self._track(self.buffer.release(time.monotonic()))
        self._publish(self._expire_idle_cameras())
        if done:
            with redis_errors():
                self._client.xack(self.config.bus.faces_stream, TRACKER_GROUP, *done)

    def _track(self, ready: list[tuple[FrameResult, str, int]]) -> list[str]:
        done = []
        for result, entry_id, skipped in ready:
            tracker = self._tracker(result.camera)
            if skipped:
                metrics.FRAMES_DROPPED.labels(camera=result.camera, reason="backpressure").inc(skipped)
            if result.end_of_stream:
                events = tracker.end_all()
                self.ended.add(result.camera)
                logger.info("camera %s ended after %d frames", result.camera, result.number)
            else:
                events = tracker.update(result)
                self._last_result_at[result.camera] = (time.monotonic(), result.captured_at)
            self._publish(events, result.read_at)
            done.append(entry_id)
        return done

    def _expire_idle_cameras(self) -> list[Event]:
        """End tracks of cameras that stopped delivering (a reconnecting source): by wall clock."""
        events: list[Event] = []
        for camera, (wall, captured) in self._last_result_at.items():
            idle = time.monotonic() - wall
            if idle > self.config.tracker.max_gap_s:
                events += self._tracker(camera).expire(captured + idle)
        return events

    def _end_everything(self) -> list[Event]:
        return [event for tracker in self.trackers.values() for event in tracker.end_all()]

    def _tracker(self, camera: str) -> CameraTracker:
        if camera not in self.trackers:
            keep = self.settings.indexer.unknowns.per_track
            self.trackers[camera] = CameraTracker(
                camera, self.config.tracker, self.run_token, keep, self._attributes
            )
        return self.trackers[camera]

    def _publish(self, events: list[Event], read_at: float | None = None) -> None:
        """Publish events; latency runs from ``read_at`` (the frame's arrival), else from capture."""
        for event in events:
            if event.type is EventType.RECOGNIZED and not self._cooldown_passed(event):
                metrics.RECOGNITIONS.labels(camera=event.camera, outcome="suppressed").inc()
                logger.info("%s seen again on %s within the cooldown: same visit", event.name, event.camera)
                continue
            start = read_at if read_at is not None and not math.isnan(read_at) else None
            if start is None:
                start = datetime.fromisoformat(event.captured_at).timestamp()
            latency_s = max(time.time() - start, 0.0)
            event = event.model_copy(update={"latency_ms": round(latency_s * 1000, 1)})
            self.publisher.publish(event)
            metrics.EVENTS_PUBLISHED.labels(camera=event.camera, type=event.type.value).inc()
            if event.type is not EventType.TRACK_ENDED:
                metrics.RECOGNITIONS.labels(camera=event.camera, outcome=event.type.value).inc()
                metrics.EVENT_LATENCY.labels(camera=event.camera).observe(latency_s)
            logger.info(
                "event %s %s %s on %s", event.type.value, event.name or "-", event.track_id, event.camera
            )
            outcome = self._tracker(event.camera).take_outcome(event.event_id)
            if outcome is not None:  # after publishing: what is kept refers to a written event
                self.learning.learn(outcome)

    def _cooldown_passed(self, event: Event) -> bool:
        cooldown_ms = int(self.config.tracker.cooldown_s * 1000)
        if cooldown_ms == 0:
            return True
        key = f"{self.config.events.stream}:cooldown:{event.camera}:{event.identity_id}"
        with redis_errors():
            return bool(self._client.set(key, event.track_id, nx=True, px=cooldown_ms))
