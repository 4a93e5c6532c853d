"""One service per Redis: the lease a running ``vigil run`` holds on its Redis.

Two services on one Redis would read every camera twice and run two trackers on one results
stream. A PID file cannot prevent that (the services may run on different machines, and a
killed one leaves its file behind), so the supervisor holds a lease in Redis itself: the key
``vigil:service`` with an expiry (``SET NX PX``), renewed every ``LEASE_S / 3``. A second
``vigil run`` finds the key and refuses in one line, naming the holder and when the lease
expires; a supervisor killed with ``kill -9`` stops renewing, so its lease is free again
``LEASE_S`` later. Workers-only nodes (``vigil worker``) join a service and take no lease.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime

import redis

from vigil.errors import ServiceRunningError
from vigil.streams import redis_errors, text

logger = logging.getLogger(__name__)

SERVICE_LEASE_KEY = "vigil:service"
# Long enough that a renewal missed in a short Redis hiccup does not free the lease (three
# renewals fit in it), short enough that after a crash a new service can start 15 s later.
LEASE_S = 15.0
RENEW_EVERY_S = LEASE_S / 3

# Renew only a lease that is ours; take it back if it expired while Redis was unreachable.
# PEXPIRE is not refused when Redis is full (it has no DENYOOM flag), so a full Redis does not
# cost the running service its lease.
_RENEW_SCRIPT = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
if not holder then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return 1
end
return 0
"""
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds the lease (the key's JSON value)."""

    host: str
    pid: int
    run_id: str
    started_at: float
    """Unix seconds."""

    def to_json(self) -> str:
        return json.dumps(
            {"host": self.host, "pid": self.pid, "run_id": self.run_id, "started_at": self.started_at}
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> LeaseHolder | None:
        """The holder, or None for a value that is not one (written by something else)."""
        try:
            fields = json.loads(raw)
            return cls(
                str(fields["host"]), int(fields["pid"]), str(fields["run_id"]), float(fields["started_at"])
            )
        except (ValueError, KeyError, TypeError):
            return None

    def describe(self) -> str:
        since = datetime.fromtimestamp(self.started_at).strftime("%Y-%m-%d %H:%M:%S")
        return f"pid {self.pid} on {self.host}, run {self.run_id}, since {since}"


class ServiceLease:
    """The supervisor's lease on its Redis: :meth:`acquire`, then :meth:`renew_if_due`, :meth:`release`.

    Args:
        client: The Redis the service runs on.
        run_id: The run's short id, to tell this run's lease from another's.
        lease_s: How long the lease lasts without renewal (seconds).
        key: The lease's key (tests use one of their own).
    """

    def __init__(
        self, client: redis.Redis, run_id: str, lease_s: float = LEASE_S, key: str = SERVICE_LEASE_KEY
    ) -> None:
        self._client = client
        self.key = key
        self.holder = LeaseHolder(socket.gethostname(), os.getpid(), run_id, time.time())
        self._token = self.holder.to_json()
        self._lease_ms = round(lease_s * 1000)
        self._renewed_at = 0.0

    def use_connection(self, client: redis.Redis) -> None:
        """Carry on with a new connection (after a Redis outage)."""
        self._client = client

    def acquire(self) -> None:
        """Take the lease.

        Raises:
            ServiceRunningError: Another service holds it; the message names it and says when it expires.
            RedisUnavailableError: Redis cannot be reached or refuses the write.
        """
        with redis_errors():
            if self._client.set(self.key, self._token, nx=True, px=self._lease_ms):
                self._renewed_at = time.monotonic()
                logger.info("service lease taken (%s)", self.holder.describe())
                return
            pipe = self._client.pipeline(transaction=True)
            pipe.get(self.key)
            pipe.pttl(self.key)
            raw, ttl_ms = pipe.execute()
        if raw is None:  # it expired between the two calls: try once more
            self.acquire()
            return
        other = LeaseHolder.from_json(raw)
        who = other.describe() if other is not None else repr(text(raw))
        expires = (
            f"its lease expires in {max(int(ttl_ms), 0) / 1000:.1f} s" if int(ttl_ms) >= 0 else "no expiry"
        )
        raise ServiceRunningError(
            f"another Vigil service runs on this Redis ({who}; {expires} unless it renews it): "
            "stop it first, or wait for the lease to expire if it was killed; `vigil worker` joins a running "
            "service instead"
        )

    def renew_if_due(self) -> bool:
        """Renew the lease when ``RENEW_EVERY_S`` has passed; False once another service holds it.

        Raises:
            RedisUnavailableError: Redis cannot be reached (the caller retries on its next round).
        """
        if time.monotonic() - self._renewed_at < self._lease_ms / 3000:
            return True
        with redis_errors():
            ours = bool(self._client.eval(_RENEW_SCRIPT, 1, self.key, self._token, self._lease_ms))
        if ours:
            self._renewed_at = time.monotonic()
        return ours

    def release(self) -> None:
        """Give the lease up (a clean stop): the next ``vigil run`` can start at once."""
        with redis_errors():
            self._client.eval(_RELEASE_SCRIPT, 1, self.key, self._token)
        logger.info("service lease released")
