"""Camera and file readers: one video source in, sampled RGB frames out.

A ``CameraReader`` owns one ``CameraConfig`` and yields ``Frame`` objects from
``frames()``. It knows nothing about Redis or metrics: the caller wires those through the
``on_state`` callback and what it does with each frame.

Sources, by the shape of ``CameraConfig.source``:

- digits (``0``, ``1``): a webcam, opened by index with OpenCV's default backend;
- a URL with a scheme (``rtsp://``, ``http://``, ``udp://``, ...): a live stream, opened
  with OpenCV's FFmpeg backend and its open/read timeouts;
- anything else (or ``file://``): a video file, also through FFmpeg.

Frames are *sampled* down to ``CameraConfig.fps``, never queued: a file by its frame
timestamps, a live source by the wall clock. Files end; live sources reconnect with
exponential back-off until they work again, ``stop()`` is called, or more than
``max_reconnects`` attempts in a row have failed::

    connecting ──► live ──► finished      file ended, stop(), or frames() closed
       ▲    │        │
       │    ▼        ▼                    live: no frame for read_timeout_s, stream broke
     backing-off ◄───┘
            └────► failed                 too many failures in a row (a bad file: at once);
                                          frames() raises StreamError
"""

from __future__ import annotations

import enum
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vigil.config.streamer import CameraConfig
from vigil.errors import StreamError
from vigil.redact import redact_url
from vigil.retry import RetryPolicy
from vigil.typing import ImageRGB

logger = logging.getLogger(__name__)

# A scheme such as rtsp://, http://, udp:// (RFC 3986: a letter, then letters, digits, + - .).
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_FILE_URL = re.compile(r"^file://", re.IGNORECASE)

# Failed grabs in a row before a source counts as ended or lost. OpenCV's grab() gives up
# at the first packet FFmpeg refuses (a corrupt stretch of a file, a damaged RTP packet),
# but the next grab() carries on after it; a garbage stretch spanning ~10 s of 30 fps video
# is not worth waiting for. At a real end of file each failed grab costs microseconds.
MAX_FAILED_GRABS = 300

# Frame timestamps are milliseconds rounded to doubles: this much early still counts as due.
_DUE_TOLERANCE_S = 1e-3

# What FFmpeg assumes when a container states no frame rate; used only to estimate positions
# of frames that carry no timestamp.
_FALLBACK_NATIVE_FPS = 25.0


def is_file_source(source: str) -> bool:
    """True for a video file path (or ``file://`` URL); False for a webcam index or a stream URL."""
    return not source.isdigit() and (not _URL_SCHEME.match(source) or bool(_FILE_URL.match(source)))


class SourceState(enum.StrEnum):
    """Where a reader stands with its source (the values are the wire/metric format)."""

    CONNECTING = "connecting"
    LIVE = "live"
    BACKING_OFF = "backing-off"
    FAILED = "failed"
    FINISHED = "finished"


@dataclass(frozen=True, slots=True)
class Frame:
    """One sampled frame.

    Attributes:
        camera: ``CameraConfig.name``.
        number: 0, 1, 2, ... over the reader's whole life, consecutive over the sampled
            frames and continuing across reconnects, so consumers can spot gaps.
        captured_at: Wall-clock time (``time.time()``, seconds) the frame was read; for a
            file played in real time, the time it was due.
        position_s: Position in the source: a file's frame timestamp, or for a live
            source the seconds since this connection was made.
        image: ``(H, W, 3)`` ``uint8``, RGB.
    """

    camera: str
    number: int
    captured_at: float
    position_s: float
    image: ImageRGB


class CameraReader:
    """Reads one source and yields its frames, sampled to the camera's fps.

    ``frames()`` is meant to run in one thread (the reader's); ``stop()``, ``state`` and
    ``reconnects`` may be used from any other. ``on_state(state, reason)`` is called in the
    reader's thread at every state change, e.g. to publish it or update a metric.

    Example:
        >>> reader = CameraReader(CameraConfig(name="door", source="door.mp4", realtime=False))
        >>> numbers = [frame.number for frame in reader.frames()]  # doctest: +SKIP
    """

    def __init__(
        self, camera: CameraConfig, on_state: Callable[[SourceState, str], None] | None = None
    ) -> None:
        self._camera = camera
        self._on_state = on_state
        self._stop_event = threading.Event()
        self._state = SourceState.CONNECTING
        self._reconnects = 0
        self._next_number = 0
        # The failure count is the caller's (it resets on any frame): the policy only gives delays.
        self._backoff = RetryPolicy(camera.reconnect_initial_s, camera.reconnect_max_s)

    @property
    def state(self) -> SourceState:
        return self._state

    @property
    def reconnects(self) -> int:
        """Connections opened after a failure, over the reader's life."""
        return self._reconnects

    def stop(self) -> None:
        """Ask ``frames()`` to return; safe from any thread.

        It returns at its next frame or back-off step, so within about one
        ``read_timeout_s`` (``open_timeout_s`` while a connection is being opened).
        """
        self._stop_event.set()

    def frames(self) -> Generator[Frame, None, None]:
        """Yield the source's sampled frames until it ends, fails or ``stop()`` is called.

        Call it once per reader. Closing the generator early (``close()``, or dropping it
        after a ``break``) releases the source and finishes the reader, like ``stop()``.

        Raises:
            StreamError: A file is missing or not a readable video, or a live source failed
                more than ``max_reconnects`` times in a row. The state is ``failed`` first.
        """
        source = self._camera.source
        try:
            if is_file_source(source):
                yield from self._file_frames(Path(_FILE_URL.sub("", source)))
            elif source.isdigit():
                yield from self._live_frames(lambda: _open_webcam(int(source)))
            else:
                yield from self._live_frames(lambda: self._open_stream(source))
        except GeneratorExit:  # the consumer stopped iterating: as good as stop()
            self._set_state(SourceState.FINISHED, "the consumer closed the reader")
            raise

    # --- files ---------------------------------------------------------------------------

    def _file_frames(self, path: Path) -> Iterator[Frame]:
        self._set_state(SourceState.CONNECTING, f"opening {path}")
        if not path.exists():
            raise self._fail(f"{path} does not exist; check the path")
        if not path.is_file():
            raise self._fail(f"{path} is not a file; give the path of a video file")
        capture = self._open_stream(str(path))
        try:
            if not capture.isOpened():
                raise self._fail(f"{path} is not a readable video (FFmpeg cannot open it); check the file")
            yield from self._sampled_file(capture, path)
        finally:
            capture.release()
        self._set_state(SourceState.FINISHED, "stopped" if self._stop_event.is_set() else "end of file")

    def _sampled_file(self, capture: cv2.VideoCapture, path: Path) -> Iterator[Frame]:
        """Keep each frame whose timestamp reaches the next due time; pace them if real time."""
        period_s = 1.0 / self._camera.fps
        due_s = 0.0
        started_at: float | None = None  # monotonic time of position 0
        for position_s, decode in self._file_grabs(capture, path):
            if self._stop_event.is_set():
                return
            if position_s + _DUE_TOLERANCE_S < due_s:
                continue
            due_s = _next_due_s(position_s, period_s)
            image = decode()
            if image is None:
                logger.debug(
                    "camera %s: frame at %.3f s could not be converted", self._camera.name, position_s
                )
                continue
            if started_at is None:
                started_at = time.monotonic() - position_s
                self._set_state(SourceState.LIVE, f"reading {path} at {self._camera.fps:g} fps")
            if self._camera.realtime and not self._wait_until(started_at + position_s):
                return
            yield self._frame(position_s, image)

    def _file_grabs(
        self, capture: cv2.VideoCapture, path: Path
    ) -> Iterator[tuple[float, Callable[[], ImageRGB | None]]]:
        """Grab a file's frames one by one: each one's position, and how to decode its image.

        Decoding (``retrieve``) is left to the caller, who does it for sampled frames only.
        The first two frames are checked before anything is yielded: FFmpeg also "plays" a
        photo renamed ``.mp4``, as a one-frame video, and that is not a video to watch.
        """
        native_period_s = 1.0 / _native_fps(capture)
        if not capture.grab():
            raise self._fail(f"{path} is not a readable video (no frames could be decoded); check the file")
        position_s = _file_position_s(capture, -math.inf, native_period_s)
        first_image = _retrieve_rgb(capture)
        if not capture.grab():
            raise self._fail(f"{path} holds a single image, not a video; give a video file")
        yield position_s, lambda: first_image
        while True:
            position_s = _file_position_s(capture, position_s, native_period_s)
            yield position_s, lambda: _retrieve_rgb(capture)
            if not _grab_past_damage(capture):
                return

    # --- live sources --------------------------------------------------------------------

    def _live_frames(self, open_capture: Callable[[], cv2.VideoCapture]) -> Iterator[Frame]:
        """Connect, read, and on failure back off and reconnect, until stopped or failed."""
        failures = 0
        while not self._stop_event.is_set():
            self._set_state(SourceState.CONNECTING, f"opening {self._display_source}")
            capture = open_capture()
            try:
                if capture.isOpened():
                    reason, frames_read = yield from self._sampled_live(capture)
                else:
                    reason = f"cannot open it (no such device, refused, or no answer in {self._open_timeout})"
                    frames_read = 0
            finally:
                capture.release()
            if self._stop_event.is_set():
                break
            failures = 1 if frames_read else failures + 1
            if self._camera.max_reconnects is not None and failures > self._camera.max_reconnects:
                raise self._fail(
                    f"{self._display_source} failed {failures} times in a row (last: {reason}); "
                    "check that the camera is on and the address is right"
                )
            if not self._back_off(failures, reason):
                break
            self._reconnects += 1
        self._set_state(SourceState.FINISHED, "stopped")

    def _sampled_live(self, capture: cv2.VideoCapture) -> Generator[Frame, None, tuple[str, int]]:
        """Read one connection, keeping a frame whenever the wall clock reaches the next due time.

        Skipped frames are only grabbed (demuxed and decoded), not converted to RGB.

        Returns (through ``yield from``): why the connection ended, and how many frames it
        delivered (any frame resets the failure count).
        """
        period_s = 1.0 / self._camera.fps
        connected_at = time.monotonic()
        due_s = 0.0
        frames_read = 0
        while not self._stop_event.is_set():
            lost = self._grab_live(capture)
            if lost is not None:
                return lost, frames_read
            frames_read += 1
            if frames_read == 1:
                self._set_state(SourceState.LIVE, "frames are flowing")
            position_s = time.monotonic() - connected_at
            if position_s + _DUE_TOLERANCE_S < due_s:
                continue
            due_s = _next_due_s(position_s, period_s)
            image = _retrieve_rgb(capture)
            if image is not None:
                yield self._frame(position_s, image)
        return "stopped", frames_read

    def _grab_live(self, capture: cv2.VideoCapture) -> str | None:
        """Grab the next frame: None when one came, else why the connection counts as lost.

        FFmpeg's read timeout alone is not enough. A grab it cuts short can still return
        True: OpenCV then flushes the decoder, which hands out a frame it was holding back,
        so a hung camera would look alive at one frame per timeout. And a closed
        connection fails every grab at once, which only a count bounds.
        """
        timeout_s = self._camera.read_timeout_s
        failing_since = time.monotonic()
        for _ in range(MAX_FAILED_GRABS):
            started = time.monotonic()
            grabbed = capture.grab()
            now = time.monotonic()
            if now - started >= timeout_s:
                return f"no data for {timeout_s:g} s (read timeout)"
            if grabbed:
                return None
            if now - failing_since >= timeout_s:
                return f"no frame for {now - failing_since:.1f} s (read timeout)"
        return f"the stream ended or broke ({MAX_FAILED_GRABS} failed reads in a row)"

    def _back_off(self, failures: int, reason: str) -> bool:
        """Wait before the next attempt; False if ``stop()`` was called meanwhile."""
        delay_s = self._backoff.delay_s(failures)
        self._set_state(SourceState.BACKING_OFF, f"{reason}; reconnecting in {delay_s:.2f} s")
        return not self._stop_event.wait(delay_s)

    # --- shared --------------------------------------------------------------------------

    def _open_stream(self, source: str) -> cv2.VideoCapture:
        """Open a file or URL with FFmpeg, which honours the open and read timeouts."""
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            round(self._camera.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            round(self._camera.read_timeout_s * 1000),
        ]
        return cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)

    def _frame(self, position_s: float, image: ImageRGB) -> Frame:
        frame = Frame(self._camera.name, self._next_number, time.time(), position_s, image)
        self._next_number += 1
        return frame

    def _wait_until(self, deadline: float) -> bool:
        """Sleep until ``deadline`` (monotonic); False if ``stop()`` was called meanwhile."""
        return not self._stop_event.wait(max(0.0, deadline - time.monotonic()))

    def _fail(self, message: str) -> StreamError:
        """Enter ``failed`` and build the error for the caller to raise."""
        self._set_state(SourceState.FAILED, message)
        return StreamError(message, camera=self._camera.name)

    def _set_state(self, state: SourceState, reason: str) -> None:
        self._state = state
        level = logging.WARNING if state in (SourceState.BACKING_OFF, SourceState.FAILED) else logging.INFO
        logger.log(level, "camera %s: %s (%s)", self._camera.name, state.value, reason)
        if self._on_state is not None:
            self._on_state(state, reason)

    @property
    def _display_source(self) -> str:
        return _redact_password(self._camera.source)

    @property
    def _open_timeout(self) -> str:
        return f"{self._camera.open_timeout_s:g} s"


# --- private helpers -------------------------------------------------------------------------


def _next_due_s(position_s: float, period_s: float) -> float:
    """The next sampling slot after a kept frame at ``position_s``.

    Slots sit on the fixed grid ``k * period_s``, so sampling does not drift with
    rounding, and after a gap (a stall, a hole in a file) it resumes on the next slot
    instead of catching up with a burst.
    """
    return (math.floor((position_s + _DUE_TOLERANCE_S) / period_s) + 1) * period_s


def _file_position_s(capture: cv2.VideoCapture, previous_s: float, native_period_s: float) -> float:
    """The grabbed frame's timestamp, or one frame after the previous when it has none.

    OpenCV reports 0 for frames without a timestamp, which would stall sampling.
    """
    reported_s = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
    if math.isfinite(reported_s) and reported_s > previous_s:
        return reported_s
    return previous_s + native_period_s


def _open_webcam(index: int) -> cv2.VideoCapture:
    """Open a local camera with OpenCV's default backend (V4L2 on Linux).

    FFmpeg's OpenCV backend opens files and URLs, not camera indexes, and OpenCV documents
    the open/read timeout parameters for FFmpeg and GStreamer only, so none are passed: a
    V4L2 read is bounded by the driver's own select() timeout, and a camera that stops
    delivering is then reconnected like a stream.
    """
    return cv2.VideoCapture(index)


def _grab_past_damage(capture: cv2.VideoCapture) -> bool:
    """Grab the next frame, retrying past packets FFmpeg rejects; False at the end."""
    return any(capture.grab() for _ in range(MAX_FAILED_GRABS))


def _native_fps(capture: cv2.VideoCapture) -> float:
    fps = capture.get(cv2.CAP_PROP_FPS)
    return fps if math.isfinite(fps) and 0.0 < fps <= 1000.0 else _FALLBACK_NATIVE_FPS


def _retrieve_rgb(capture: cv2.VideoCapture) -> ImageRGB | None:
    """Convert the last grabbed frame to RGB; None if OpenCV has no colour image for it."""
    ok, bgr = capture.retrieve()
    if not ok or bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
        return None
    rgb: ImageRGB = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
    return rgb


def _redact_password(source: str) -> str:
    """``rtsp://user:secret@host/x`` → ``rtsp://user:***@host/x``, for logs and errors."""
    return redact_url(source)
