"""Deletions gathered from several stores, run as one atomic step that works on a full Redis.

Erasing a person (``indexer.erase``) reads what each store holds about them, then deletes all
of it at once. A full Redis (``maxmemory`` reached) refuses every command queued in a
MULTI/EXEC and every command that may allocate, but a Lua script may run once its first write
has freed memory. So the deletions run as a script: DEL, SREM, ZREM and HDEL first (they
only free memory), then the tombstones (a marker of each deleted thing, for readers that
meet it later), then the version bump and its announcement that make searchers reload.

Streams need more than XDEL: Redis only flags an XDEL'd entry as deleted inside its node,
and the bytes stay in memory, in the snapshot and in a rewritten AOF until the whole node
is emptied. ``purge_stream`` therefore rewrites a stream without the entries that mention a
person, keeping every other entry's id, the stream's last id, its consumer groups and their
pending entries, in one script. ``purge_hash`` does the same for a hash whose fields each hold
one thing (the tracker's open tracks): the fields that mention the person go. ``purge_set_keys``
deletes the keys a set names, and the set (a person's event thumbnails).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import redis
from redis.client import Pipeline

Members = list[str | int]
Command = list[str | int]
# Arguments per command: Lua's ``unpack`` is bounded by its stack (8000 slots).
_CHUNK = 500
TOMBSTONE_KEEP_S = 7 * 24 * 3600.0
"""How long a tombstone stays: far longer than any result a worker wrote before it saw the change
can take to reach the tracker (a batch), and short enough that the set stays small."""

# KEYS[1]: version key. ARGV[1]: the version planned against ('' when unset), ARGV[2]: the
# change channel, then commands as (argument count, arguments...). Returns the new version,
# or -1 when the gallery changed since the plan (plan again).
_DELETE_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if (current or '') ~= ARGV[1] then return -1 end
local i = 3
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + 1 + n
end
local version = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[2], version)
return version
"""

# KEYS[1]: the stream. ARGV: substrings; an entry with one in any field value goes. Returns how
# many entries went. Kept entries are written back with their ids (after DEL: the first write
# frees memory, so a full Redis accepts the rest), then the last id, groups and pending entries.
_PURGE_SCRIPT = """
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then return 0 end
local function mentions(fields)
  for f = 2, #fields, 2 do
    for n = 1, #ARGV do
      if string.find(fields[f], ARGV[n], 1, true) then return true end
    end
  end
  return false
end
local kept, doomed, start = {}, 0, '-'
while true do
  local batch = redis.call('XRANGE', key, start, '+', 'COUNT', 1000)
  for _, entry in ipairs(batch) do
    if mentions(entry[2]) then doomed = doomed + 1 else kept[#kept + 1] = entry end
  end
  if #batch < 1000 then break end
  start = '(' .. batch[#batch][1]
end
if doomed == 0 then return 0 end
local info = redis.call('XINFO', 'STREAM', key)
local last_id
for f = 1, #info, 2 do
  if info[f] == 'last-generated-id' then last_id = info[f + 1] end
end
local groups = {}
for _, group in ipairs(redis.call('XINFO', 'GROUPS', key)) do
  local fields = {}
  for f = 1, #group, 2 do fields[group[f]] = group[f + 1] end
  local pending = {}
  if tonumber(fields['pending']) > 0 then
    pending = redis.call('XPENDING', key, fields['name'], '-', '+', fields['pending'])
  end
  groups[#groups + 1] = {fields['name'], fields['last-delivered-id'], pending}
end
redis.call('DEL', key)
local present = {}
for _, entry in ipairs(kept) do
  redis.call('XADD', key, entry[1], unpack(entry[2]))
  present[entry[1]] = true
end
for _, group in ipairs(groups) do
  redis.call('XGROUP', 'CREATE', key, group[1], group[2], 'MKSTREAM')
  for _, item in ipairs(group[3]) do
    if present[item[1]] then
      redis.call('XCLAIM', key, group[1], item[2], 0, item[1], 'IDLE', item[3], 'RETRYCOUNT', item[4],
        'FORCE', 'JUSTID')
    end
  end
end
if redis.call('EXISTS', key) == 1 then redis.call('XSETID', key, last_id) end
return doomed
"""


@dataclass
class Deletions:
    """Keys, and members of sets, sorted sets and hashes, to delete.

    Attributes:
        keys: Whole keys (DEL).
        set_members: ``(key, members)`` for SREM.
        zset_members: ``(key, members)`` for ZREM.
        hash_fields: ``(key, fields)`` for HDEL.
        tombstones: ``(key, member)`` added to a sorted set after the deletions, scored with the
            time (``tombstone_commands``): what was deleted, for readers that meet it later.
    """

    keys: list[str] = field(default_factory=list)
    set_members: list[tuple[str, Members]] = field(default_factory=list)
    zset_members: list[tuple[str, Members]] = field(default_factory=list)
    hash_fields: list[tuple[str, list[str]]] = field(default_factory=list)
    tombstones: list[tuple[str, str]] = field(default_factory=list)

    def extend(self, other: Deletions) -> Deletions:
        """Add ``other``'s deletions to these; returns self."""
        self.keys += other.keys
        self.set_members += other.set_members
        self.zset_members += other.zset_members
        self.hash_fields += other.hash_fields
        self.tombstones += other.tombstones
        return self

    def commands(self) -> list[Command]:
        """The deletions as Redis commands, in chunks of at most 500 arguments."""
        commands: list[Command] = [["DEL", *chunk] for chunk in _chunks(list(dict.fromkeys(self.keys)))]
        for name, pairs in (
            ("SREM", self.set_members),
            ("ZREM", self.zset_members),
            ("HDEL", self.hash_fields),
        ):
            for key, members in pairs:
                commands += [[name, key, *chunk] for chunk in _chunks(list(members))]
        return commands + tombstone_commands(self.tombstones, time.time())

    def queue(self, pipe: Pipeline) -> None:
        """Queue every deletion on ``pipe`` (after ``multi()``, on a Redis that is not full)."""
        for command in self.commands():
            pipe.execute_command(*command)  # type: ignore[no-untyped-call]  # untyped in redis-py

    def run(
        self, client: redis.Redis, version_key: str, planned_version: bytes | None, channel: str
    ) -> int | None:
        """Run the deletions, bump ``version_key`` and publish it on ``channel``: one atomic script.

        Args:
            planned_version: The version read before the deletions were planned.

        Returns:
            The new version, or None when the version moved since the plan (nothing was done:
            plan again).
        """
        arguments: list[str | int | bytes] = [planned_version or b"", channel]
        for command in self.commands():
            arguments += [len(command), *command]
        result = int(cast(int, client.eval(_DELETE_SCRIPT, 1, version_key, *arguments)))
        return None if result < 0 else result


# KEYS[1]: a hash. ARGV: substrings; a field whose value holds one goes. Returns how many went.
_PURGE_HASH_SCRIPT = """
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return 0 end
local all, doomed = redis.call('HGETALL', KEYS[1]), {}
for f = 1, #all, 2 do
  for n = 1, #ARGV do
    if string.find(all[f + 1], ARGV[n], 1, true) then
      doomed[#doomed + 1] = all[f]
      break
    end
  end
end
for start = 1, #doomed, 500 do  -- unpack is bounded by Lua's stack
  redis.call('HDEL', KEYS[1], unpack(doomed, start, math.min(start + 499, #doomed)))
end
return #doomed
"""


# KEYS[1]: a set of key names. Deletes them and the set; returns how many of them existed.
_PURGE_SET_KEYS_SCRIPT = """
if redis.call('TYPE', KEYS[1]).ok ~= 'set' then return 0 end
local members, deleted = redis.call('SMEMBERS', KEYS[1]), 0
for start = 1, #members, 500 do  -- unpack is bounded by Lua's stack
  deleted = deleted + redis.call('DEL', unpack(members, start, math.min(start + 499, #members)))
end
redis.call('DEL', KEYS[1])
return deleted
"""


def purge_stream(client: redis.Redis, stream: str, mentions: Sequence[str]) -> int:
    """Rewrite ``stream`` without the entries holding any of ``mentions`` in a field value.

    Every other entry keeps its id; the stream keeps its last id, consumer groups (with their
    last delivered id) and the pending entries that remain. Runs as one script: other
    clients see the stream before or after, never in between.

    Returns:
        How many entries went.
    """
    return int(cast(int, client.eval(_PURGE_SCRIPT, 1, stream, *mentions)))


def purge_hash(client: redis.Redis, key: str, mentions: Sequence[str]) -> int:
    """Delete the fields of hash ``key`` whose value holds any of ``mentions``, in one script.

    Returns:
        How many fields went.
    """
    return int(cast(int, client.eval(_PURGE_HASH_SCRIPT, 1, key, *mentions)))


def purge_set_keys(client: redis.Redis, key: str) -> int:
    """Delete every key that set ``key`` names, then the set, in one script.

    Returns:
        How many of the named keys existed.
    """
    return int(cast(int, client.eval(_PURGE_SET_KEYS_SCRIPT, 1, key)))


def tombstone_commands(tombstones: Sequence[tuple[str, str]], now: float) -> list[Command]:
    """ZADD each tombstone at ``now``, and drop those older than ``TOMBSTONE_KEEP_S`` from its set.

    They come after the deletions: on a full Redis the deletions free the memory they need.
    """
    commands: list[Command] = []
    for key, member in tombstones:
        commands += [
            ["ZADD", key, repr(now), member],
            ["ZREMRANGEBYSCORE", key, "-inf", repr(now - TOMBSTONE_KEEP_S)],
        ]
    return commands


def _chunks(items: list[str | int] | list[str]) -> list[list[str | int]]:
    return [list(items[start : start + _CHUNK]) for start in range(0, len(items), _CHUNK)]
