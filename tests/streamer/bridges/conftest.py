"""Fixtures of the bridge tests: a real Mosquitto broker on a free port, and settings on a real Redis.

The broker is Debian's ``mosquitto`` (``make test`` installs it as root); without it the tests that
need it skip and say what to install. Each broker runs from a config file generated in the test's
``tmp_path``, on a free ``127.0.0.1`` port, and is always killed at teardown.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.conftest import DEFAULT_SERVER_URL, server_reachable
from vigil.config import Settings, load_settings

MOSQUITTO = Path("/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = Path("/usr/bin/mosquitto_passwd")
BROKER_START_S = 10.0
BROKER_STOP_S = 5.0


def free_port() -> int:
    """A TCP port nobody listens on now (the kernel's pick), on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class MosquittoBroker:
    """A real Mosquitto broker: its address, and ways to kill and restart it on the same port.

    Attributes:
        host: Always ``127.0.0.1``.
        port: The broker's port (the same across restarts).
        directory: Where its config, password file, persistence and log live.
        users: User name → password; empty: anonymous clients are allowed.
        persistence: Whether it keeps retained messages and queued QoS 1 messages across restarts
            (saved every second and at a clean stop; a kill loses the last second).
    """

    directory: Path
    users: dict[str, str] = field(default_factory=dict)
    persistence: bool = True
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:<port>`` (no credentials)."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "mosquitto.log"

    def log(self) -> str:
        """What the broker logged so far (connections, refusals, errors)."""
        parts = [self.directory / "mosquitto.out", self.log_path]
        return "".join(path.read_text(errors="replace") for path in parts if path.exists())

    def start(self) -> None:
        """Start the broker (again) and wait until it accepts connections; fail the test if it does not."""
        if self.running:
            return
        config = self._write_config()
        with (self.directory / "mosquitto.out").open("ab") as log:  # start-up errors, before the log file
            self.process = subprocess.Popen(
                [str(MOSQUITTO), "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + BROKER_START_S
        while not accepts_connections(self.host, self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"mosquitto did not start on port {self.port}; its log:\n{self.log()}")
            time.sleep(0.05)

    def stop(self, kill: bool = True) -> None:
        """Stop the broker: killed (``SIGKILL``, like a crash) or, with ``kill`` False, a clean stop."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(BROKER_STOP_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(BROKER_STOP_S)
        self.process = None

    def restart(self, down_s: float = 0.0, kill: bool = True) -> None:
        """Stop the broker, leave it down for ``down_s`` seconds, and start it again on the same port."""
        self.stop(kill=kill)
        time.sleep(down_s)
        self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _write_config(self) -> Path:
        # A log file, not stderr: mosquitto flushes it line by line, so a killed broker's log is complete.
        lines = [f"listener {self.port} {self.host}", f"log_dest file {self.log_path}", "log_type all"]
        if os.geteuid() == 0:
            # As root, mosquitto drops to user `mosquitto`, who cannot read the test's private tmp_path.
            lines.append("user root")
        if self.persistence:
            lines += [
                "persistence true",
                f"persistence_location {self.directory}/",
                "autosave_interval 1",
            ]
        else:
            lines.append("persistence false")
        if self.users:
            password_file = self.directory / "passwords"
            password_file.write_text("")
            for user, password in self.users.items():
                subprocess.run(
                    [str(MOSQUITTO_PASSWD), "-b", str(password_file), user, password],
                    check=True,
                    capture_output=True,
                )
            password_file.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        config = self.directory / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        return config


MosquittoFactory = Callable[..., MosquittoBroker]


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[MosquittoFactory]:
    """Start brokers: ``mosquitto_factory(users={"u": "p"}, persistence=True)``; each is killed at teardown.

    With ``users``, anonymous clients are refused and only those user names and passwords are let in.
    """
    if not MOSQUITTO.exists():
        pytest.skip(f"no Mosquitto broker at {MOSQUITTO}: install the Debian package `mosquitto`")
    brokers: list[MosquittoBroker] = []

    def start(users: dict[str, str] | None = None, persistence: bool = True) -> MosquittoBroker:
        if users and not MOSQUITTO_PASSWD.exists():
            pytest.skip(f"no {MOSQUITTO_PASSWD}: install the Debian package `mosquitto`")
        directory = tmp_path / f"mosquitto-{len(brokers)}"
        directory.mkdir()
        broker = MosquittoBroker(directory, users=dict(users or {}), persistence=persistence)
        brokers.append(broker)
        broker.start()
        return broker

    yield start
    for broker in brokers:
        broker.stop(kill=True)


@pytest.fixture
def mosquitto(mosquitto_factory: MosquittoFactory) -> MosquittoBroker:
    """A running broker open to anonymous clients, with persistence; ``stop()``/``start()``/``restart()``."""
    return mosquitto_factory()


@pytest.fixture
def redis_url() -> str:
    """The machine's Redis server (``REDIS_URL``, default ``redis://127.0.0.1:6379/0``); skips without one."""
    if not server_reachable():
        pytest.skip("no Redis server at REDIS_URL (default redis://127.0.0.1:6379/0)")
    return os.environ.get("REDIS_URL", DEFAULT_SERVER_URL)


@pytest.fixture
def bridge_settings(tmp_path: Path, redis_url: str) -> Iterator[Settings]:
    """Settings on the real Redis server with an events stream of the test's own (deleted at teardown).

    ``home`` is the test's ``tmp_path``; tests change what they need with ``model_copy``.
    """
    namespace = f"test{uuid.uuid4().hex[:12]}"
    settings = load_settings(environ={"VIGIL_REDIS__URL": redis_url}).model_copy(update={"home": tmp_path})
    events = settings.streamer.events.model_copy(
        update={"stream": f"{namespace}:events", "channel_prefix": f"{namespace}:events"}
    )
    yield settings.model_copy(update={"streamer": settings.streamer.model_copy(update={"events": events})})
    cleaner = redis.Redis.from_url(redis_url)
    try:
        keys = list(cleaner.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            cleaner.delete(*keys)
    finally:
        cleaner.close()


def have_mosquitto() -> bool:
    """Whether the broker binary is installed (for ``skipif`` marks)."""
    return MOSQUITTO.exists() and shutil.which(str(MOSQUITTO)) is not None
