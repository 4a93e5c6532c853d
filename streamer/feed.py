"""One camera's reader process: sampled frames onto the bus, its state into Redis and metrics.

The source's state (connecting / live / backing-off / failed / finished) is kept in the
Redis hash ``vigil:sources`` (one JSON value per camera, read by ``vigil status``) and in
the ``vigil_source_*`` metrics. A Redis outage does not stop the reader: frames read
meanwhile are dropped (and counted) and the connection is re-established, because live
video is worthless late.

A file read as fast as possible (``realtime: false``, a batch job) is the exception: its
reader waits for room on the bus before each frame (``FrameBus.wait_for_room``), so the
workers set the pace and no frame is trimmed unanalysed. Its end-of-stream marker is sent
until a worker has taken it: one trimmed by other cameras' frames would leave a multi-file
run waiting for ever.
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
from vigil.errors import RedisRefusedError, RedisUnavailableError
from vigil.retry import REDIS_RETRY_POLICY, Backoff
from vigil.stop import StopFlag, pause
from vigil.streams import connect_frames_redis, connect_redis, redis_errors

logger = logging.getLogger(__name__)

SOURCES_KEY = "vigil:sources"
# How often a finished reader checks that a worker took its end-of-stream marker.
_END_POLL_S = 0.05


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
        now = time.time()
        last = self.fields.get("last_frame_at")
        if isinstance(last, float) and now > last:
            # Frames per second sent, smoothed over about the last ten frames.
            previous = float(str(self.fields.get("fps", 0.0)))
            rate = 1.0 / (now - last)
            self.fields["fps"] = round(rate if previous == 0.0 else 0.9 * previous + 0.1 * rate, 2)
        self.fields["frames"] = int(str(self.fields["frames"])) + 1
        self.fields["last_frame_at"] = now

    def save(self) -> None:
        if self.client is None:
            return
        try:
            with redis_errors():
                self.client.hset(SOURCES_KEY, self.camera, json.dumps(self.fields))
        except RedisRefusedError:
            pass  # Redis is full or read-only: the next save tries again
        except RedisUnavailableError:
            # The frames have a server of their own, so the frame loop may not notice: drop the
            # connection (each call on a dead one waits out redis-py's retries) and let it reconnect.
            self.client = None


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
        sent = _feed(settings, camera, reader, status, bus, first_number=sent, stop=stop)
    finally:
        # A file that ended, or a source that failed for good: the tracker closes its tracks.
        if reader.state in (SourceState.FINISHED, SourceState.FAILED):
            bus = _connect(settings, status, wait_s=30.0)
            if bus is not None:
                _send_end(bus, camera.name, sent, stop)
        status.save()


def _send_end(bus: FrameBus, camera: str, frames: int, stop: StopFlag) -> None:
    """Send the end-of-stream marker, again whenever it was trimmed before a worker took it.

    Gives up when ``stop`` is set (the service drains: the tracker ends every track anyway)
    or Redis goes away.
    """
    try:
        marker = _publish_end(bus, camera, frames, stop)
        while marker is not None:
            delivered = bus.end_delivered(marker)
            if delivered:
                return
            if delivered is False:
                logger.warning(
                    "camera %s: end-of-stream marker trimmed from the bus; sending it again", camera
                )
                marker = _publish_end(bus, camera, frames, stop)
            if pause(stop, _END_POLL_S):
                return
    except RedisUnavailableError as exc:
        logger.warning("camera %s: cannot send the end of its stream (%s)", camera, exc)


def _publish_end(bus: FrameBus, camera: str, frames: int, stop: StopFlag) -> str | None:
    """Publish the end-of-stream marker, retrying while Redis refuses writes; None if stopped first.

    Unlike a frame, the marker cannot be dropped: without it the tracker waits for the file for ever.
    """
    backoff = Backoff(REDIS_RETRY_POLICY)
    while True:
        try:
            return bus.publish_end(camera, frames)
        except RedisRefusedError as exc:
            delay_s = backoff.failed()
            logger.warning(
                "camera %s: Redis refuses the end of its stream (%s); retrying in %.1f s",
                camera,
                exc,
                delay_s,
            )
            if pause(stop, delay_s):
                return None


def _feed(
    settings: Settings,
    camera: CameraConfig,
    reader: CameraReader,
    status: SourceStatus,
    bus: FrameBus | None,
    first_number: int,
    stop: StopFlag,
) -> int:
    """Put the reader's frames on the bus, numbered from ``first_number``; returns the next number."""
    sent = first_number
    last_saved = 0.0
    # A batch job goes at the workers' pace; a camera (or a file played in real time) never waits.
    paced = is_file_source(camera.source) and not camera.realtime
    # A file's frames carry media time (reading start + position), so tracks keep their real
    # durations even when the file is read faster than real time.
    media_start: float | None = None
    # While Redis is away, frames are dropped and reconnections spaced out by the shared policy;
    # while it refuses writes (full, cannot persist), frames are dropped on the same connection.
    reconnects = Backoff(REDIS_RETRY_POLICY)
    reconnect_at = 0.0
    refused = False
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
            bus = _connect(settings, status) if time.monotonic() >= reconnect_at else None
            if bus is None:
                if time.monotonic() >= reconnect_at:
                    reconnect_at = time.monotonic() + reconnects.failed()
                metrics.FRAMES_DROPPED.labels(camera=camera.name, reason="redis").inc()
                continue
            reconnects.succeeded()
        try:
            if paced and not bus.wait_for_room(stop):
                break  # stopping: the frames not yet sent are not wanted any more
            bus.publish(camera.name, number, captured_at, frame.image, read_at=frame.captured_at, paced=paced)
        except RedisRefusedError as exc:
            if not refused:  # once per episode, not once per frame
                logger.warning(
                    "camera %s: dropping frames until Redis takes them again (%s)", camera.name, exc
                )
            refused = True
            metrics.REDIS_ERRORS.labels(component="reader", error=exc.kind.value).inc()
            metrics.FRAMES_DROPPED.labels(camera=camera.name, reason="redis").inc()
            continue
        except RedisUnavailableError as exc:
            logger.warning("camera %s: cannot put frames on the bus (%s); reconnecting", camera.name, exc)
            metrics.REDIS_ERRORS.labels(component="reader", error=exc.kind.value).inc()
            metrics.FRAMES_DROPPED.labels(camera=camera.name, reason="redis").inc()
            bus = None
            continue
        if refused:
            logger.info("camera %s: Redis takes frames again", camera.name)
            refused = False
        if status.client is None and time.monotonic() >= reconnect_at:  # lost by SourceStatus.save
            try:
                status.client = connect_redis(settings.redis, settings.home)
                reconnects.succeeded()
            except RedisUnavailableError:
                reconnect_at = time.monotonic() + reconnects.failed()
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
    backoff = Backoff(REDIS_RETRY_POLICY)
    while True:
        try:
            status.client = connect_redis(settings.redis, settings.home)
            # frames go to the frame bus's own server, which never writes them to disk
            return FrameBus(connect_frames_redis(settings.redis, settings.home), settings.streamer.bus)
        except RedisUnavailableError as exc:
            if time.monotonic() >= deadline:
                logger.warning("Redis unavailable: %s", exc)
                return None
            time.sleep(min(backoff.failed(), max(deadline - time.monotonic(), 0.0)))
