"""The webhooks bridge's durable delivery queue: one per endpoint, in Redis.

Every event bound for an endpoint goes through its queue (an outbox): the bridge writes it
there and only then acknowledges the events stream, and the endpoint's own thread delivers from
it. A crash therefore loses nothing (the event is either still pending on the stream or in the
queue), and a dead endpoint's backlog waits in its queue while the healthy ones carry on.

Keys, under the events stream's name (``streamer.events.stream``, like its thumbnails),
``{stream}:webhooks:{endpoint}:``

- ``due``: sorted set, event id scored by the time (Unix seconds) of its next attempt;
- ``born``: sorted set, event id scored by its capture time, to drop the oldest and the too old;
- ``bodies``: hash, event id -> the exact JSON body to POST (an erasure purges it like a stream
  entry: the hash holds the event JSON as published);
- ``attempts``: hash, event id -> attempts made so far;
- ``seen``: sorted set of the event ids queued in the last ``max_age_s`` (at most ``SEEN_LIMIT``),
  scored by when: an event read again (the bridge crashed between queueing and acknowledging, or
  the tracker republished it after a crash, with the same id) is not queued twice.

Each change is one Lua script or transaction, and taking the next event (``claim``) moves its
next attempt one lease into the future, so a bridge that dies mid-request leaves that event to be
tried again once the lease runs out (by its successor). Run the webhooks bridge once (docs/bridges.md):
a second ``vigil bridge webhooks``, or one beside a ``vigil run`` with ``bridges.webhooks.enabled``,
shares the same consumer group and consumer, so both get the same pending events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import redis

from vigil.streams import redis_errors, text

# Ids remembered per endpoint, at most (besides ``max_age_s``): repeats come from the bridge's last
# read batch (100) or the tracker's last moments before a crash, never from thousands of events back.
SEEN_LIMIT = 10_000

# Queue an event: skip ids seen before, add the rest, forget old ids, drop the oldest beyond the limit.
# KEYS: due, born, bodies, attempts, seen.
# ARGV: now, seen_cutoff, limit, seen_limit, then (id, body, born, due) per event.
_ENQUEUE_SCRIPT = """
local added, repeated = 0, 0
for i = 5, #ARGV, 4 do
  local id = ARGV[i]
  if redis.call('ZADD', KEYS[5], 'NX', ARGV[1], id) == 1 then
    redis.call('ZADD', KEYS[1], ARGV[i + 3], id)
    redis.call('ZADD', KEYS[2], ARGV[i + 2], id)
    redis.call('HSET', KEYS[3], id, ARGV[i + 1])
    redis.call('HSET', KEYS[4], id, 0)
    added = added + 1
  else
    repeated = repeated + 1
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. ARGV[2])
redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -tonumber(ARGV[4]) - 1)
local result = {added, repeated}
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if over > 0 then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, over - 1)) do
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
    table.insert(result, id)
  end
end
return result
"""

# Take the next due event and lease it. KEYS: due, born, bodies, attempts. ARGV: now, lease_until.
# Returns {"due", id, body, attempts, born} | {"wait", next_due} | {"empty"}. An id whose body is gone
# (erased) is removed on the way.
_CLAIM_SCRIPT = """
while true do
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #first == 0 then return {'empty'} end
  if tonumber(first[2]) > tonumber(ARGV[1]) then return {'wait', first[2]} end
  local id = first[1]
  local body = redis.call('HGET', KEYS[3], id)
  if body then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    local born = redis.call('ZSCORE', KEYS[2], id) or ARGV[1]
    return {'due', id, body, redis.call('HGET', KEYS[4], id) or '0', born}
  end
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[4], id)
end
"""

# Schedule another attempt, unless the event left the queue meanwhile (dropped, erased).
# KEYS: due, attempts. ARGV: id, due, attempts.
_RESCHEDULE_SCRIPT = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
  return 1
end
return 0
"""

# Remove the events captured before a cutoff. KEYS: due, born, bodies, attempts. ARGV: cutoff.
_EXPIRE_SCRIPT = """
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
for _, id in ipairs(old) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
end
return #old
"""


@dataclass(frozen=True)
class WebhookQueueKeys:
    """The Redis keys of one endpoint's queue (see the module docstring)."""

    base: str

    @classmethod
    def for_endpoint(cls, events_stream: str, endpoint: str) -> WebhookQueueKeys:
        return cls(f"{events_stream}:webhooks:{endpoint}")

    @property
    def due(self) -> str:
        return f"{self.base}:due"

    @property
    def born(self) -> str:
        return f"{self.base}:born"

    @property
    def bodies(self) -> str:
        return f"{self.base}:bodies"

    @property
    def attempts(self) -> str:
        return f"{self.base}:attempts"

    @property
    def seen(self) -> str:
        return f"{self.base}:seen"

    def all(self) -> list[str]:
        return [self.due, self.born, self.bodies, self.attempts, self.seen]


@dataclass(frozen=True)
class QueuedEvent:
    """An event waiting for delivery to one endpoint.

    Attributes:
        event_id: The event's id (``X-Vigil-Event-Id``).
        body: The exact JSON body to POST (what the signature covers).
        born_s: The event's capture time (Unix seconds): the age that ``max_age_s`` bounds.
        attempts: Attempts made so far.
    """

    event_id: str
    body: str
    born_s: float
    attempts: int = 0


@dataclass(frozen=True)
class EnqueueResult:
    """What queueing a batch did.

    Attributes:
        added: Events queued.
        repeated: Events already queued before (or delivered) within ``max_age_s``: left out.
        dropped: Ids of the oldest waiting events dropped to keep the queue within its limit.
    """

    added: int
    repeated: int
    dropped: list[str]


@dataclass(frozen=True)
class Claim:
    """The outcome of :meth:`WebhookQueue.claim`: an event to deliver now, or when to look again.

    Attributes:
        event: The event to deliver (leased to the caller), or None when none is due.
        next_due_s: When the next event falls due (Unix seconds); None when the queue is empty.
    """

    event: QueuedEvent | None
    next_due_s: float | None = None


def queued_events(client: redis.Redis, events_stream: str, endpoints: Sequence[str]) -> dict[str, int]:
    """Events waiting in each endpoint's queue (by endpoint name).

    Raises:
        RedisUnavailableError: Redis cannot be reached.
    """
    with redis_errors(), client.pipeline(transaction=False) as pipe:
        for name in endpoints:
            pipe.zcard(WebhookQueueKeys.for_endpoint(events_stream, name).born)
        sizes = cast(list[int], pipe.execute())
    return dict(zip(endpoints, sizes, strict=True))


class WebhookQueue:
    """One endpoint's durable queue (see the module docstring). Thread-safe: each change is one script
    or transaction."""

    def __init__(self, client: redis.Redis, keys: WebhookQueueKeys, limit: int, remember_s: float) -> None:
        """
        Args:
            client: The Redis client (shared; redis-py's clients are thread-safe).
            keys: The endpoint's keys.
            limit: Events the queue may hold; beyond it the oldest are dropped.
            remember_s: How long an id stays in ``seen`` (the bridge's ``max_age_s``: anything
                older is dropped on reading anyway).
        """
        self.keys = keys
        self.limit = limit
        self._remember_s = remember_s
        self.use_connection(client)

    def use_connection(self, client: redis.Redis) -> None:
        """Talk to Redis through ``client`` from now on (after an outage: a new connection)."""
        self._client = client
        self._enqueue = client.register_script(_ENQUEUE_SCRIPT)
        self._claim = client.register_script(_CLAIM_SCRIPT)
        self._reschedule = client.register_script(_RESCHEDULE_SCRIPT)
        self._expire = client.register_script(_EXPIRE_SCRIPT)

    def enqueue(self, events: Sequence[QueuedEvent], now_s: float) -> EnqueueResult:
        """Queue ``events`` due now, in order; ids already seen are left out.

        Raises:
            RedisUnavailableError: Redis cannot be reached or refuses the write.
        """
        if not events:
            return EnqueueResult(0, 0, [])
        arguments: list[str | float | int] = [
            repr(now_s),
            repr(now_s - self._remember_s),
            self.limit,
            SEEN_LIMIT,
        ]
        for index, event in enumerate(events):
            # Due a microsecond apart, so the queue keeps the stream's order (equal scores sort by
            # id), and all by now. Unix times near 2e9 s keep about 0.25 us apart in a double.
            due_s = now_s - (len(events) - index) * 1e-6
            arguments += [event.event_id, event.body, repr(event.born_s), repr(due_s)]
        with redis_errors():
            reply = cast(list[int | bytes], self._enqueue(keys=self._script_keys(seen=True), args=arguments))
        return EnqueueResult(int(reply[0]), int(reply[1]), [text(cast(bytes, raw)) for raw in reply[2:]])

    def claim(self, now_s: float, lease_s: float) -> Claim:
        """Take the next event due by ``now_s``; it is not due again for ``lease_s`` unless rescheduled.

        Raises:
            RedisUnavailableError: Redis cannot be reached or refuses the write.
        """
        with redis_errors():
            reply = cast(
                list[bytes], self._claim(keys=self._script_keys(), args=[repr(now_s), repr(now_s + lease_s)])
            )
        kind = text(reply[0])
        if kind == "empty":
            return Claim(None)
        if kind == "wait":
            return Claim(None, float(reply[1]))
        event = QueuedEvent(text(reply[1]), text(reply[2]), float(reply[4]), int(reply[3]))
        return Claim(event)

    def reschedule(self, event_id: str, due_s: float, attempts: int) -> bool:
        """Try ``event_id`` again at ``due_s``; False when it left the queue meanwhile.

        Raises:
            RedisUnavailableError: Redis cannot be reached or refuses the write.
        """
        keys = [self.keys.due, self.keys.attempts]
        with redis_errors():
            return bool(self._reschedule(keys=keys, args=[event_id, repr(due_s), attempts]))

    def remove(self, event_id: str) -> None:
        """Take ``event_id`` out of the queue (delivered, or given up).

        Raises:
            RedisUnavailableError: Redis cannot be reached or refuses the write.
        """
        with redis_errors(), self._client.pipeline(transaction=True) as pipe:
            pipe.zrem(self.keys.due, event_id)
            pipe.zrem(self.keys.born, event_id)
            pipe.hdel(self.keys.bodies, event_id)
            pipe.hdel(self.keys.attempts, event_id)
            pipe.execute()

    def expire(self, cutoff_s: float) -> int:
        """Drop the events captured before ``cutoff_s``; returns how many.

        Raises:
            RedisUnavailableError: Redis cannot be reached or refuses the write.
        """
        with redis_errors():
            return int(cast(int, self._expire(keys=self._script_keys(), args=[repr(cutoff_s)])))

    def size(self) -> int:
        """Events waiting in the queue (leased ones included).

        Raises:
            RedisUnavailableError: Redis cannot be reached.
        """
        with redis_errors():
            return int(self._client.zcard(self.keys.born))

    def _script_keys(self, *, seen: bool = False) -> list[str]:
        keys = [self.keys.due, self.keys.born, self.keys.bodies, self.keys.attempts]
        return [*keys, self.keys.seen] if seen else keys
