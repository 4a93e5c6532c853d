"""A live camera made of a clip: GStreamer's RTSP server serving a video file, for benchmarks and tests.

``vigil bench faults`` kills and restarts it to see a live camera die and come back; the
reader tests freeze it to see a camera hang. The server is GStreamer's
(``gst-rtsp-server``), driven by a short script run with the system Python, which is where
Debian installs its bindings (``python3-gi``, ``gir1.2-gst-rtsp-server-1.0``); the clip's
H.264 is sent as is, no re-encoding. FFmpeg alone cannot do this: it can publish to an RTSP
server or receive one publisher, not serve clients. Each client gets its own pipeline, so a
reconnecting reader sees the clip again from its beginning.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from vigil.errors import StreamError

SYSTEM_PYTHON = Path("/usr/bin/python3")
RTSP_PACKAGES = "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"
SERVER_START_TIMEOUT_S = 15.0

# Runs under the system Python: argv is port, mount point, clip.
_SERVER_SCRIPT = """
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
_PROBE_SCRIPT = """
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
missing = [name for name in ("filesrc", "qtdemux", "h264parse", "rtph264pay", "udpsink")
           if Gst.ElementFactory.find(name) is None]
assert not missing, f"GStreamer elements missing: {missing}"
"""


def rtsp_server_missing() -> str | None:
    """Why the RTSP server cannot run here (what to install), or None when it can."""
    if not SYSTEM_PYTHON.exists():
        return (
            f"{SYSTEM_PYTHON} not found: the GStreamer RTSP server runs under the system Python "
            f"with: apt-get install {RTSP_PACKAGES}"
        )
    try:
        probe = subprocess.run(
            [str(SYSTEM_PYTHON), "-c", _PROBE_SCRIPT], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{SYSTEM_PYTHON} could not check for GStreamer ({exc}); apt-get install {RTSP_PACKAGES}"
    if probe.returncode != 0:
        last_line = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"GStreamer RTSP server not available ({last_line}); apt-get install {RTSP_PACKAGES}"
    return None


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it, then we let it go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ClipRtspServer:
    """An RTSP server process serving ``clip`` at ``url``; it can be killed, frozen and restarted.

    Example:
        >>> server = ClipRtspServer(Path("hamilton.mp4"), Path("rtsp.log"))
        >>> server.start()
        >>> server.url
        'rtsp://127.0.0.1:40123/live'
        >>> server.kill()
    """

    def __init__(self, clip: Path, log_path: Path) -> None:
        self.clip = clip
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/live"
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and return once it accepts connections on its port.

        Raises:
            StreamError: It did not come up (the message holds its log).
        """
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [str(SYSTEM_PYTHON), "-c", _SERVER_SCRIPT, str(self.port), "/live", str(self.clip)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not self._accepts() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self._accepts() or self._process.poll() is not None:
            self.kill()
            log_text = self._log_path.read_text(errors="replace").strip()
            raise StreamError(f"the RTSP server did not come up on port {self.port}: {log_text}")

    def kill(self) -> None:
        """SIGKILL, like a camera losing power: no goodbye to connected clients."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    def freeze(self) -> None:
        """SIGSTOP: the connection stays open but no packet comes any more (a hung camera)."""
        if self._process is None:
            raise StreamError("the RTSP server is not running")
        os.kill(self._process.pid, signal.SIGSTOP)

    def _accepts(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            return True  # exited: stop waiting, start() reports it with the log
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
            return True
        return False
