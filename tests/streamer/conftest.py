"""Real video sources for the reader tests: the shared clip, and a real RTSP server serving it.

The RTSP server is GStreamer's (``gst-rtsp-server``), driven by a short script run with
the system Python, which is where Debian installs its bindings (``python3-gi``,
``gir1.2-gst-rtsp-server-1.0``); the clip's H.264 is sent as is, no re-encoding. FFmpeg
alone cannot do this: it can publish to an RTSP server or receive one publisher, not
serve clients. ``make test`` installs the packages when it runs as root; elsewhere the
tests that need the server skip and say what to install.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streamer.reader import CameraReader, Frame, SourceState
from tests.conftest import SHARED_DATA, require
from vigil.config.streamer import CameraConfig

CLIP = SHARED_DATA / "clips" / "hamilton.mp4"
# What ffprobe says about the clip: 275 frames at 29.97 fps, the last at 9.142 s.
CLIP_FRAMES = 275
CLIP_LAST_FRAME_S = 9.142

SYSTEM_PYTHON = Path("/usr/bin/python3")
RTSP_PACKAGES = "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"
SERVER_START_TIMEOUT_S = 15.0

# Runs under the system Python: argv is port, mount point, clip. Each client gets its own
# pipeline, so a reconnecting reader starts the clip again from its beginning.
_RTSP_SERVER_SCRIPT = """
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer

port, mount, clip = sys.argv[1:4]
Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    f'( filesrc location="{clip}" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )'
)
server.get_mount_points().add_factory(mount, factory)
if not server.attach(None):
    sys.exit(f"cannot listen on 127.0.0.1:{port}")
GLib.MainLoop().run()
"""

# Checks that the bindings and every element the pipeline above uses are installed.
_RTSP_PROBE_SCRIPT = """
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
missing = [name for name in ("filesrc", "qtdemux", "h264parse", "rtph264pay", "udpsink")
           if Gst.ElementFactory.find(name) is None]
assert not missing, f"GStreamer elements missing: {missing}"
"""


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


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it, then we let it go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Poll ``condition`` until it holds or ``timeout_s`` passes; whether it held."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class RtspServer:
    """A GStreamer RTSP server process serving ``clip`` at ``url``; it can be killed and restarted."""

    def __init__(self, clip: Path, log_path: Path) -> None:
        self.clip = clip
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/live"
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and return once it accepts connections on its port."""
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [str(SYSTEM_PYTHON), "-c", _RTSP_SERVER_SCRIPT, str(self.port), "/live", str(self.clip)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        came_up = wait_for(self._accepts, SERVER_START_TIMEOUT_S)
        if not came_up or self._process.poll() is not None:
            self.kill()
            log_text = self._log_path.read_text(errors="replace").strip()
            pytest.fail(f"RTSP server did not come up on port {self.port}: {log_text}")

    def kill(self) -> None:
        """SIGKILL, like a camera losing power: no goodbye to connected clients."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    def freeze(self) -> None:
        """SIGSTOP: the connection stays open but no packet comes any more (a hung camera)."""
        assert self._process is not None, "server not running"
        os.kill(self._process.pid, signal.SIGSTOP)

    def _accepts(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            return True  # exited: stop waiting, start() reports it with the log
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
            return True
        return False


@pytest.fixture(scope="session")
def rtsp_available() -> None:
    """Skip unless the system Python can run GStreamer's RTSP server."""
    if not SYSTEM_PYTHON.exists():
        pytest.skip(
            f"{SYSTEM_PYTHON} not found: the GStreamer RTSP server runs under the system Python "
            f"with: apt-get install {RTSP_PACKAGES}"
        )
    probe = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", _RTSP_PROBE_SCRIPT], capture_output=True, text=True, timeout=60
    )
    if probe.returncode != 0:
        last_line = (probe.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(
            f"GStreamer RTSP server not available ({last_line}); "
            f"`make test` installs it as root, or: apt-get install {RTSP_PACKAGES}"
        )


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
