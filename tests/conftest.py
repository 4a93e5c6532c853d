"""Shared fixtures: where the real test data lives, an isolated VIGIL_HOME, and real Redis servers.

The Redis tests run against the embedded server (in a tmp home of their own) and against the
machine's server from ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) when it answers; there
they use a key namespace of their own (``RedisBackend.namespace``) and delete its keys on teardown.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from indexer.gallery import Gallery
from vigil.config import Settings, load_settings
from vigil.config.redis import RedisConfig
from vigil.image import load_image
from vigil.models.pipeline import FacePipeline
from vigil.streams import connect_redis
from vigil.typing import ImageRGB

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PEOPLE = SHARED_DATA / "people" / "face_recognition"
LFW = SHARED_DATA / "lfw"
DEFAULT_SERVER_URL = "redis://127.0.0.1:6379/0"


def require(path: Path) -> Path:
    """Skip the test, saying what is missing, unless ``path`` exists."""
    if not path.exists():
        pytest.skip(f"test data not found: {path} (the shared data folder sits beside the checkout)")
    return path


def people_image(name: str) -> ImageRGB:
    return load_image(require(PEOPLE / name))


@pytest.fixture(scope="session")
def vigil_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A VIGIL_HOME of the test session's own, so tests never touch the user's data."""
    return tmp_path_factory.mktemp("vigil_home")


@pytest.fixture(scope="session")
def settings(vigil_home: Path) -> Settings:
    return load_settings(environ={}).model_copy(update={"home": vigil_home})


@pytest.fixture(scope="session")
def pipeline(settings: Settings) -> Iterator[FacePipeline]:
    """One loaded pipeline for the whole session: loading the models takes seconds."""
    face_pipeline = FacePipeline.from_settings(settings)
    face_pipeline.load()
    yield face_pipeline


def dlib_settings(settings: Settings) -> Settings:
    """``settings`` with the first model family, MTCNN + dlib's ResNet, whatever the default is."""
    return settings.model_copy(
        update={
            "detector": settings.detector.model_copy(update={"backend": "mtcnn"}),
            "embedder": settings.embedder.model_copy(update={"backend": "dlib_resnet"}),
        }
    )


@pytest.fixture(scope="session")
def dlib_pipeline(settings: Settings) -> FacePipeline:
    """MTCNN + dlib, loaded once: for tests whose real-face examples were picked on dlib's scores."""
    pipeline = FacePipeline.from_settings(dlib_settings(settings))
    pipeline.load()
    return pipeline


def stop_embedded(client: redis.Redis) -> None:
    """Stop the embedded server (SIGTERM: it flushes and exits) and remove its socket dir.

    ``client.shutdown()`` would do too, but redis-py retries the dropped connection for
    seconds first.
    """
    server_pid = int(getattr(client, "pid", 0) or 0)
    if server_pid:
        os.kill(server_pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while is_alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.02)
    client.close()
    socket_dir = getattr(client, "redis_dir", None)
    if socket_dir:
        shutil.rmtree(socket_dir, ignore_errors=True)


def is_alive(pid: int) -> bool:
    """False once ``pid`` has exited (a zombie counts as exited: it holds no files or sockets)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class RedisBackend:
    """One real server for a test: clients to it, and a way to drop and re-open the connection."""

    def __init__(self, kind: str, home: Path) -> None:
        self.kind = kind
        self.home = home
        self.namespace = f"test{uuid.uuid4().hex[:12]}"
        self._url = os.environ.get("REDIS_URL", DEFAULT_SERVER_URL)
        self._clients: list[redis.Redis] = []

    def client(self) -> redis.Redis:
        """Another client to the same server (for the embedded one, attaching to it)."""
        config = RedisConfig(url=None if self.kind == "embedded" else self._url)
        client = connect_redis(config, self.home)
        self._clients.append(client)
        return client

    def gallery(self) -> Gallery:
        return Gallery(self.client(), namespace=self.namespace)

    def reconnect(self) -> Gallery:
        """Close every client (stopping the embedded server), then open a new gallery."""
        if self.kind == "embedded":
            for client in self._clients[:1]:
                stop_embedded(client)
        for client in self._clients:
            client.close()
        self._clients.clear()
        return self.gallery()

    def close(self) -> None:
        if self._clients and self.kind == "server":
            cleaner = self._clients[0]
            keys = list(cleaner.scan_iter(match=f"{self.namespace}:*", count=1000))
            if keys:
                cleaner.delete(*keys)
        if self._clients and self.kind == "embedded":
            stop_embedded(self._clients[0])
        for client in self._clients:
            client.close()


def server_reachable() -> bool:
    probe = redis.Redis.from_url(os.environ.get("REDIS_URL", DEFAULT_SERVER_URL), socket_connect_timeout=1)
    try:
        return bool(probe.ping())
    except redis.RedisError:
        return False
    finally:
        probe.close()


@pytest.fixture(params=["embedded", "server"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisBackend]:
    """The embedded server in a tmp home, then the machine's server (skipped when unreachable)."""
    if request.param == "server" and not server_reachable():
        pytest.skip("no Redis server at REDIS_URL (default redis://127.0.0.1:6379/0)")
    redis_backend = RedisBackend(request.param, tmp_path)
    yield redis_backend
    redis_backend.close()
