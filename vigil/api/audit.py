"""The audit trail: every change made through the API, who made it and when, in a Redis stream.

vigil:api:audit   stream  {at, who (the key's name), action, target}, the last 100,000
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import cast

import redis

from vigil.streams import StreamEntry, redis_errors, text

AUDIT_STREAM = "vigil:api:audit"
AUDIT_MAX_ENTRIES = 100_000


@dataclass(frozen=True)
class AuditEntry:
    """One change: when (Unix seconds), by which key, what, on what."""

    at: float
    who: str
    action: str
    target: str


def record_change(client: redis.Redis, who: str, action: str, target: str) -> None:
    """Add a change to the audit stream (the oldest go past ``AUDIT_MAX_ENTRIES``)."""
    fields = {"at": repr(time.time()), "who": who, "action": action, "target": target}
    with redis_errors():
        client.xadd(AUDIT_STREAM, fields, maxlen=AUDIT_MAX_ENTRIES, approximate=True)  # type: ignore[arg-type]


def read_changes(client: redis.Redis, count: int = 100) -> list[AuditEntry]:
    """The latest ``count`` changes, newest first."""
    with redis_errors():
        entries = cast(list[StreamEntry], client.xrevrange(AUDIT_STREAM, count=count))
    return [
        AuditEntry(
            float(fields[b"at"]), text(fields[b"who"]), text(fields[b"action"]), text(fields[b"target"])
        )
        for _, fields in entries
    ]
