"""Real video sources for the reader tests: the shared clip, and a real RTSP server serving it.

The RTSP server is ``streamer.rtsp_clip_server``'s (GStreamer under the system Python).
``make test`` installs its packages when it runs as root; elsewhere the tests that need the
server skip and say what to install.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from streamer.reader import CameraReader, Frame, SourceState
from streamer.rtsp_clip_server import ClipRtspServer, rtsp_server_missing
from streamer.tracker import TrackerService
from streamer.worker import Worker
from tests.conftest import SHARED_DATA, require
from vigil.config import Settings
from vigil.config.streamer import CameraConfig
from vigil.errors import StreamError
from vigil.models.pipeline import FacePipeline
from vigil.typing import ImageRGB

CLIP = SHARED_DATA / "clips" / "hamilton.mp4"
# What ffprobe says about the clip: 275 frames at 29.97 fps, the last at 9.142 s.
CLIP_FRAMES = 275
CLIP_LAST_FRAME_S = 9.142
TRACKER_WAIT_S = 30.0


def make_camera(source: str | Path, **overrides: Any) -> CameraConfig:
    """A camera for tests: files as fast as possible, short timeouts and back-offs."""
    fields: dict[str, Any] = {
        "name": "test-cam",
        "source": str(source),
        "fps": 5.0,
        "realtime": False,
        "open_timeout_s": 5.0,
        "read_timeout_s": 1.0,
        "reconnect_initial_s": 0.05,
        "reconnect_max_s": 0.2,
    }
    fields.update(overrides)
    return CameraConfig(**fields)


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Poll ``condition`` until it holds or ``timeout_s`` passes; whether it held."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class RtspServer(ClipRtspServer):
    """The clip's RTSP server, failing the test (with its log) when it does not come up."""

    def start(self) -> None:
        try:
            super().start()
        except StreamError as exc:
            pytest.fail(str(exc))


@pytest.fixture(scope="session")
def rtsp_available() -> None:
    """Skip unless the system Python can run GStreamer's RTSP server."""
    missing = rtsp_server_missing()
    if missing is not None:
        pytest.skip(f"{missing} (`make test` installs it as root)")


@pytest.fixture
def rtsp_server(rtsp_available: None, tmp_path: Path) -> Iterator[RtspServer]:
    """A running RTSP server serving the shared clip; killed after the test whatever happens."""
    server = RtspServer(require(CLIP), tmp_path / "rtsp-server.log")
    try:
        server.start()
        yield server
    finally:
        server.kill()


class ReaderThread:
    """Runs ``CameraReader.frames()`` in a thread, recording states, frames and the error."""

    def __init__(self, camera: CameraConfig) -> None:
        self.states: list[SourceState] = []
        self.frames: list[Frame] = []
        self.error: BaseException | None = None
        self.reader = CameraReader(camera, on_state=lambda state, _reason: self.states.append(state))
        self._thread = threading.Thread(target=self._run, name=f"reader:{camera.name}", daemon=True)

    def __enter__(self) -> ReaderThread:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self, timeout_s: float = 10.0) -> float:
        """Stop the reader and wait for its thread; the seconds that took."""
        started = time.monotonic()
        self.reader.stop()
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"reader still running {timeout_s} s after stop()"
        return time.monotonic() - started

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"reader did not end within {timeout_s} s"

    def _run(self) -> None:
        try:
            for frame in self.reader.frames():
                self.frames.append(frame)
        except BaseException as exc:  # handed to the test thread, which asserts on it
            self.error = exc


def run_worker_then_tracker(
    client: redis.Redis,
    settings: Settings,
    pipeline: FacePipeline,
    frames: list[ImageRGB],
    cameras: tuple[str, ...],
    tracker_name: str,
    between: Callable[[], None] | None = None,
) -> None:
    """The real worker, then the real tracker, over ``frames`` from each camera at 5 frames/s
    (``between``, if given, runs once the worker is done and before the tracker starts)."""
    worker = Worker(client, settings, pipeline)
    worker.bus.ensure_group()
    tracker = TrackerService(client, settings, tracker_name, finish_after=set(cameras))
    tracker.ensure_group()
    start = time.time() - len(frames) / 5
    for camera in cameras:
        for number, image in enumerate(frames):
            worker.bus.publish(camera, number, start + number / 5, image)
        worker.bus.publish_end(camera, len(frames))
    while worker.step():
        pass
    if between is not None:
        between()
    thread = threading.Thread(target=tracker.run, args=(threading.Event(),), daemon=True)
    thread.start()
    thread.join(TRACKER_WAIT_S)
    assert not thread.is_alive(), "the tracker did not finish"
