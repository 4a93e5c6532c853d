"""`vigil people delete` works on a full Redis (defect 5 of issue 13, erasure part).

With ``maxmemory`` reached, Redis refuses every MULTI/EXEC and every command that may
allocate; erasure must still work, since deleting is what frees memory. A private
``redis-server`` on a free port is filled up (never the shared one), then a person is
deleted through the CLI, as a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from indexer.aging import set_opted_in
from indexer.corrections import Corrections
from indexer.gallery import Gallery, erased_marker
from indexer.records import NewTemplate
from vigil.errors import VigilError

pytestmark = [pytest.mark.redis, pytest.mark.slow]

EVENTS, FACES = "vigil:events", "vigil:faces"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def full_redis(tmp_path: Path) -> Iterator[tuple[str, redis.Redis]]:
    """A private redis-server with an append-only file, on a free port."""
    binary = shutil.which("redis-server") or str(Path(sys.executable).with_name("redis-server"))
    port, directory = free_port(), tmp_path / "redis"
    directory.mkdir()
    arguments = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"]
    process = subprocess.Popen(
        [binary, *arguments, "--dir", str(directory), "--daemonize", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_connect_timeout=1)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "private redis-server did not start"
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0", client
    client.close()
    process.kill()
    process.wait(timeout=10)


def event_fields(identity_id: str, name: str) -> dict[str, str]:
    return {"event": json.dumps({"type": "recognized", "identity_id": identity_id, "name": name})}


def test_people_delete_on_a_full_redis(full_redis: tuple[str, redis.Redis], tmp_path: Path) -> None:
    url, client = full_redis
    # given Ada, with a negative, an aging opt-in, an event, a result and a cooldown, and Bob
    gallery = Gallery(client)
    rng = np.random.default_rng(0)
    ada, _ = gallery.enroll("Ada", [NewTemplate("custom-v1", rng.normal(size=8)) for _ in range(3)])
    bob, _ = gallery.enroll("Bob", [NewTemplate("custom-v1", rng.normal(size=8))])
    Corrections(gallery).add_negative(ada.identity_id, "custom-v1", rng.normal(size=8), None)
    set_opted_in(gallery, ada.identity_id, True)
    client.xadd(EVENTS, event_fields(ada.identity_id, "Ada"))  # type: ignore[arg-type]
    client.xadd(EVENTS, event_fields(bob.identity_id, "Bob"))  # type: ignore[arg-type]
    client.xadd(FACES, {"result": json.dumps({"faces": [{"identity_id": ada.identity_id}]})})
    client.set(f"{EVENTS}:cooldown:door:{ada.identity_id}", "t1")
    version = gallery.version()
    # and Redis full: maxmemory just under what it uses, with the default policy (noeviction)
    client.config_set("maxmemory", max(int(client.info("memory")["used_memory"]) - 1024, 1))
    with pytest.raises((VigilError, redis.ResponseError), match=r"OOM|maxmemory|memory"):
        gallery.create_identity("Carol")
    # when Ada is deleted with the CLI
    env = {key: value for key, value in os.environ.items() if not key.startswith("VIGIL_")}
    env |= {"VIGIL_HOME": str(tmp_path / "home"), "REDIS_URL": url}
    deleted = subprocess.run(
        [sys.executable, "-m", "vigil", "people", "delete", "Ada"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    # then she is erased everywhere, Bob is not, and searchers are told
    assert deleted.returncode == 0, deleted.stderr
    assert "deleted Ada" in deleted.stdout and "aof" in deleted.stdout, deleted.stdout
    assert gallery.find_by_name("Ada") is None and gallery.find_by_name("Bob") is not None
    assert gallery.version() != version, "searchers would not reload"
    assert client.zscore(gallery.erased_key, erased_marker(ada.identity_id)) is not None, "no tombstone"
    assert [key for key in client.scan_iter() if ada.identity_id.encode() in key] == []
    assert [fields for _, fields in client.xrange(EVENTS)] == [
        {b"event": event_fields(bob.identity_id, "Bob")["event"].encode()}
    ]
    assert client.xlen(FACES) == 0
    # and the gallery can still be searched while Redis is full (reads without MULTI)
    assert gallery.templates("custom-v1")[2].shape == (1, 8)
    assert [identity.name for identity in gallery.list_identities()] == ["Bob"]
