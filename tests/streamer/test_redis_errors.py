"""Redis errors other than a lost connection: a full Redis (OOM), one that cannot persist (MISCONF),
a read-only replica (READONLY). They are mapped in one place (``vigil.streams.redis_errors``), the
service degrades instead of crash-looping, and ``vigil status`` says what is wrong.

Every test runs a private ``redis-server`` of its own, so changing its configuration
(``maxmemory``, ``dir``, ``replicaof``) touches nobody else's server.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from streamer.bus import FrameBus
from streamer.rtsp_clip_server import free_port
from tests.conftest import PEOPLE, require
from tests.streamer.conftest import CLIP, wait_for
from vigil.config.streamer import BusConfig
from vigil.errors import RedisErrorKind, RedisRefusedError, RedisUnavailableError
from vigil.streams import ensure_group, redis_errors

pytestmark = pytest.mark.redis

NO_PORT = ("--metrics-port", "0")  # any free port: several services may run on this machine


class PrivateRedis:
    """A redis-server of this test's own on a free port, without persistence unless asked."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server") or str(Path(sys.executable).with_name("redis-server"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--dir", str(directory), "--daemonize", "no"]
            + (["--enable-protected-configs", "yes"] if _major_version(binary) >= 7 else []),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.client = redis.Redis(port=self.port, socket_connect_timeout=1)
        assert wait_for(self._answers, 10), "private redis-server did not start"

    def _answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.ConnectionError:
            return False

    def fill_up(self) -> None:
        """maxmemory of 1 byte: under noeviction (the default) every write that needs memory fails.

        Far below the memory in use, so that frames deleted meanwhile cannot make room again.
        """
        self.client.config_set("maxmemory", 1)

    def make_room(self) -> None:
        self.client.config_set("maxmemory", 0)

    def stop(self) -> None:
        self.client.close()
        self.process.kill()
        self.process.wait(timeout=10)


def _major_version(binary: str) -> int:
    output = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    return int(output.split("v=", 1)[1].split(".", 1)[0])


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "private-redis")
    yield server
    server.stop()


def _full(server: PrivateRedis) -> None:
    server.fill_up()


def _replica(server: PrivateRedis) -> None:
    # a replica of a primary that is not there still refuses writes (replica-read-only is the default)
    server.client.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))


def _cannot_persist(server: PrivateRedis) -> None:
    # a snapshot that cannot be written (its directory is gone) makes Redis refuse writes
    gone = server.directory / "gone"
    gone.mkdir()
    server.client.config_set("save", "3600 1")  # refusing writes after a failed snapshot needs save points
    server.client.config_set("dir", str(gone))
    gone.rmdir()
    server.client.bgsave()
    assert wait_for(lambda: server.client.info("persistence")["rdb_last_bgsave_status"] == "err", 10)


@pytest.mark.parametrize(
    ("condition", "kind", "advice"),
    [
        # maxmemory reached with the noeviction policy: OOM
        (_full, RedisErrorKind.OUT_OF_MEMORY, "maxmemory"),
        # a read-only replica: READONLY
        (_replica, RedisErrorKind.READONLY, "primary"),
        # the last snapshot failed and stop-writes-on-bgsave-error is on: MISCONF
        (_cannot_persist, RedisErrorKind.MISCONF, "disk"),
    ],
    ids=["oom", "readonly", "misconf"],
)
def test_refused_writes_are_mapped_to_one_error_while_reads_keep_working(
    private_redis: PrivateRedis, condition: Callable[[PrivateRedis], None], kind: RedisErrorKind, advice: str
) -> None:
    # given a Redis with a key, then in the condition
    private_redis.client.set("kept", "value")
    condition(private_redis)
    # when a write is sent, alone or in a transaction
    with pytest.raises(RedisRefusedError) as alone, redis_errors():
        private_redis.client.xadd("stream", {"field": "x" * 1000})
    with (
        pytest.raises(RedisRefusedError) as in_transaction,
        redis_errors(),
        private_redis.client.pipeline(transaction=True) as pipe,
    ):
        pipe.xadd("stream", {"field": "x" * 1000})
        pipe.execute()
    # then both are one refusal of that kind, with advice, in one line
    for caught in (alone, in_transaction):
        assert caught.value.kind is kind, caught.value
        assert advice in str(caught.value) and "\n" not in str(caught.value), str(caught.value)
    # and reads still work, and the health check names the condition
    with redis_errors():
        assert private_redis.client.get("kept") == b"value"
    from vigil.streams import redis_health

    health = redis_health(private_redis.client)
    assert kind in health.refusals, health


def test_a_lost_connection_stays_an_unavailable_server(private_redis: PrivateRedis) -> None:
    # given a server that is killed
    client = redis.Redis(port=private_redis.port, socket_connect_timeout=1)
    private_redis.process.send_signal(signal.SIGKILL)
    private_redis.process.wait(timeout=10)
    # when a command is sent, then it is an unavailable server, not a refusal
    with pytest.raises(RedisUnavailableError) as caught, redis_errors():
        client.get("kept")
    assert caught.value.kind is RedisErrorKind.CONNECTION and not isinstance(caught.value, RedisRefusedError)
    client.close()


def test_a_full_redis_refuses_frames_but_keeps_the_bus_group(private_redis: PrivateRedis) -> None:
    # given a frame bus with its group, on a Redis that then fills up
    bus = FrameBus(private_redis.client, BusConfig())
    bus.ensure_group()
    private_redis.fill_up()
    # when a reader publishes and a restarted worker joins the group again
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(RedisRefusedError):
        bus.publish("door", 0, time.time(), image)
    ensure_group(
        private_redis.client, bus.config.stream, bus.config.group
    )  # then: no error, the group exists
    # and once there is room again, frames go through
    private_redis.make_room()
    assert bus.publish("door", 1, time.time(), image)


@pytest.mark.slow
def test_the_service_rides_out_a_full_redis_and_status_says_so(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    # given a person enrolled and the service playing the clip in real time on the private Redis
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env |= {"VIGIL_HOME": str(tmp_path), "REDIS_URL": private_redis.url}
    enrolled = subprocess.run(
        [sys.executable, "-m", "vigil", "enroll", "Barack Obama", str(require(PEOPLE / "obama.jpg"))],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert enrolled.returncode == 0, enrolled.stderr
    log_path = tmp_path / "service.log"
    with log_path.open("wb") as log:
        service = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vigil",
                "-v",
                "run",
                str(require(CLIP)),
                "--workers",
                "1",
                "--json",
                *NO_PORT,
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
        )

    def frames_read() -> int:
        raw = private_redis.client.hget("vigil:sources", "hamilton")
        return int(json.loads(raw).get("frames", 0)) if raw else 0

    try:
        assert wait_for(lambda: frames_read() > 3, 180), log_path.read_text()[-3000:]
        # when Redis fills up for a few seconds
        private_redis.fill_up()
        time.sleep(4)
        # then `vigil status` says so in its report, and gallery reads still work
        status = subprocess.run(
            [sys.executable, "-m", "vigil", "status", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        people = subprocess.run(
            [sys.executable, "-m", "vigil", "people", "list"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        private_redis.make_room()
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert "out_of_memory" in report["redis"]["refusals"], report["redis"]
        assert people.returncode == 0 and "Barack Obama" in people.stdout, people.stderr
        out, _ = service.communicate(timeout=240)
    finally:
        if service.poll() is None:
            service.send_signal(signal.SIGTERM)
            service.wait(timeout=120)
    # and no process died or restarted in a loop: the reader dropped frames and carried on
    log_text = log_path.read_text()
    assert service.returncode == 0, log_text[-3000:]
    assert "exited with status" not in log_text and "Traceback" not in log_text, log_text[-3000:]
    assert "dropping frames until Redis takes them again" in log_text, log_text[-3000:]
    events = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    assert any(e["type"] == "track_ended" for e in events), events
