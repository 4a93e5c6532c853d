"""One camera's reader process: sampled frames onto the bus, its state into Redis and metrics.

The source's state (connecting / live / backing-off / failed / finished) is kept in the
Redis hash ``vigil:sources`` (one JSON value per camera, read by ``vigil status``) and in
the ``vigil_source_*`` metrics. A Redis outage does not stop the reader: frames read
meanwhile are dropped (and counted) and the connection is re-established, because live
video is worthless late.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import redis

from streamer import metrics
from streamer.bus import FrameBus
from streamer.reader import CameraReader, SourceState, is_file_source
from vigil.config import CameraConfig, Settings
from vigil.errors import RedisUnavailableError
from vigil.stop import StopFlag, pause
from vigil.streams import connect_redis, redis_errors

logger = logging.getLogger(__name__)

SOURCES_KEY = "vigil:sources"
_RECONNECT_PAUSE_S = 1.0


class SourceStatus:
    """A camera's state, mirrored to Redis and metrics."""

    def __init__(self, camera: str) -> None:
        self.camera = camera
        self.client: redis.Redis | None = None
        self.fields: dict[str, object] = {"state": SourceState.CONNECTING.value, "reason": "", "frames": 0}

    def update(self, state: SourceState, reason: str) -> None:
        if state is SourceState.BACKING_OFF:
            metrics.SOURCE_RECONNECTS.labels(camera=self.camera).inc()
        for each in SourceState:
            metrics.SOURCE_STATE.labels(camera=self.camera, state=each.value).set(int(each is state))
        metrics.SOURCE_UP.labels(camera=self.camera).set(int(state is SourceState.LIVE))
        self.fields.update(state=state.value, reason=reason, since=time.time())
        self.save()

    def resume(self) -> int:
        """The next frame number of this camera in this run (0 unless its reader was restarted)."""
        if self.client is None:
            return 0
        try:
            with redis_errors():
                raw = self.client.hget(SOURCES_KEY, self.camera)
        except RedisUnavailableError:
            return 0
        previous = json.loads(raw) if raw else {}
        self.fields["frames"] = int(previous.get("frames", 0))
        return int(previous.get("next_frame", 0))

    def count_frame(self) -> None:
        self.fields["frames"] = int(str(self.fields["frames"])) + 1
        self.fields["last_frame_at"] = time.time()

    def save(self) -> None:
        if self.client is None:
            return
        try:
            with redis_errors():
                self.client.hset(SOURCES_KEY, self.camera, json.dumps(self.fields))
        except RedisUnavailableError:
            pass  # the frame loop notices and reconnects


def feed_camera(settings: Settings, camera: CameraConfig, stop: StopFlag) -> None:
    """Read ``camera`` until its file ends, its source fails (``StreamError``) or ``stop`` is set."""
    status = SourceStatus(camera.name)
    reader = CameraReader(camera, on_state=status.update)
    threading.Thread(target=_stop_when_set, args=(stop, reader), daemon=True).start()
    # Connect first, so that even a source that fails at once shows its state in Redis.
    bus = _connect(settings, status, wait_s=10.0)
    # A reader restarted after a crash carries on the camera's frame numbers: the tracker
    # takes frames in number order and would discard a restart from 0 as late.
    sent = status.resume()
    try:
        sent = _feed(settings, camera, reader, status, bus, first_number=sent)
    finally:
        # A file that ended, or a source that failed for good: the tracker closes its tracks.
        if reader.state in (SourceState.FINISHED, SourceState.FAILED):
            bus = _connect(settings, status, wait_s=30.0)
            if bus is not None:
                bus.publish_end(camera.name, sent)
        status.save()


def _feed(
    settings: Settings,
    camera: CameraConfig,
    reader: CameraReader,
    status: SourceStatus,
    bus: FrameBus | None,
    first_number: int,
) -> int:
    """Put the reader's frames on the bus, numbered from ``first_number``; returns the next number."""
    sent = first_number
    last_saved = 0.0
    # A file's frames carry media time (reading start + position), so tracks keep their real
    # durations even when the file is read faster than real time.
    media_start: float | None = None
    for frame in reader.frames():
        captured_at = frame.captured_at
        if is_file_source(camera.source):
            if media_start is None:
                media_start = frame.captured_at - frame.position_s
            captured_at = media_start + frame.position_s
        number = first_number + frame.number
        sent = number + 1
        status.fields["next_frame"] = sent
        if bus is None:
            bus = _connect(settings, status)
            if bus is None:
                metrics.FRAMES_DROPPED.labels(camera=camera.name, reason="redis").inc()
                continue
        try:
            bus.publish(camera.name, number, captured_at, frame.image, read_at=frame.captured_at)
        except RedisUnavailableError as exc:
            logger.warning("camera %s: cannot put frames on the bus (%s); reconnecting", camera.name, exc)
            metrics.REDIS_ERRORS.labels(component="reader").inc()
            metrics.FRAMES_DROPPED.labels(camera=camera.name, reason="redis").inc()
            bus = None
            continue
        metrics.FRAMES_READ.labels(camera=camera.name).inc()
        status.count_frame()
        if time.monotonic() - last_saved > 1.0:
            last_saved = time.monotonic()
            status.save()
    return sent


def _stop_when_set(stop: StopFlag, reader: CameraReader) -> None:
    while not pause(stop, 3600.0):
        pass
    reader.stop()


def _connect(settings: Settings, status: SourceStatus, wait_s: float = 0.0) -> FrameBus | None:
    """A bus connection, or None while Redis is unavailable (retrying up to ``wait_s``)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client = connect_redis(settings.redis, settings.home)
            status.client = client
            return FrameBus(client, settings.streamer.bus)
        except RedisUnavailableError as exc:
            if time.monotonic() >= deadline:
                logger.warning("Redis unavailable: %s", exc)
                return None
            time.sleep(_RECONNECT_PAUSE_S)
