"""What the MQTT bridge's retained topics say, kept in Redis: restarts and broker losses forget nothing.

Presence follows the tracker's events: a track is on its camera from its ``recognized`` (or
``unknown``) event until its ``track_ended``; a person is present while any of their tracks is.
A person's last sighting is their latest ``recognized`` or ``track_ended`` event.

Keys (``base`` is ``<streamer.events.stream>:bridge:mqtt``)::

    {base}:present              hash  "<camera>/<track id>" -> {"identity_id": id | null, "since": ISO time}
    {base}:seen:<identity id>   str   {"camera": ..., "at": ISO time}, the person's last sighting
    {base}:cameras              set   cameras seen in events (beside the configured ones)
    {base}:retained             hash  retained topic -> the identity id it is about ("" for none)

No key holds a name: names come from the gallery when payloads are built, so an erased person's
name is gone with the gallery entry. The per-person key carries the identity id in its name, so
``indexer.erase`` deletes it with the person's other keys. The ``retained`` hash holds topics,
which carry slugs of names: it is what lets the bridge clear an erased person's retained topics
on the broker (also after an erasure made while the bridge was down), and the bridge removes a
topic from it as soon as the broker has acknowledged the clearing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import redis

from streamer.events import Event, EventType
from vigil.streams import redis_errors, text

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Presence:
    """One track on a camera now.

    Attributes:
        camera: Where.
        track_id: Which track.
        identity_id: Who, or None for a face the gallery does not know.
        since: Capture time of the event that put it there (ISO-8601 UTC).
    """

    camera: str
    track_id: str
    identity_id: str | None
    since: str


@dataclass(frozen=True)
class Sighting:
    """Where and when a person was last seen."""

    camera: str
    at: str


@dataclass(frozen=True)
class PresenceSnapshot:
    """Everything the retained topics are built from, read in one go."""

    present: list[Presence]
    seen: dict[str, Sighting]  # identity id -> last sighting
    cameras: set[str]


class StateStore:
    """The bridge's state in Redis (see the module docstring for the keys).

    Args:
        client: The Redis holding the events stream.
        base: Key prefix, ``<streamer.events.stream>:bridge:mqtt``.
    """

    def __init__(self, client: redis.Redis, base: str) -> None:
        self._client = client
        self.base = base

    @property
    def present_key(self) -> str:
        return f"{self.base}:present"

    @property
    def cameras_key(self) -> str:
        return f"{self.base}:cameras"

    @property
    def retained_key(self) -> str:
        return f"{self.base}:retained"

    def seen_key(self, identity_id: str) -> str:
        return f"{self.base}:seen:{identity_id}"

    def apply(self, events: Sequence[Event], ended: Sequence[Event] = ()) -> None:
        """Record what ``events`` say about presence, then end the tracks of ``ended``, in one transaction.

        ``ended`` are ``track_ended`` events that say nothing else the bridge shows (filtered out):
        they only take their track off its camera, if an earlier event of it put it there.

        Replaying the same events (the bridge restarted before acking them) gives the same
        state: every write sets a value rather than adding to one.

        Raises:
            RedisUnavailableError: Redis cannot be reached.
        """
        if not events and not ended:
            return
        with redis_errors(), self._client.pipeline(transaction=True) as pipe:
            for event in events:
                field = f"{event.camera}/{event.track_id}"
                pipe.sadd(self.cameras_key, event.camera)
                if event.type == EventType.TRACK_ENDED:
                    pipe.hdel(self.present_key, field)
                else:
                    presence = json.dumps({"identity_id": event.identity_id, "since": event.captured_at})
                    if event.type == EventType.RECOGNIZED:
                        pipe.hset(self.present_key, field, presence)
                    else:  # an unknown event never hides the name a recognized one gave the track
                        pipe.hsetnx(self.present_key, field, presence)
                if event.identity_id is not None and event.type != EventType.UNKNOWN:
                    sighting = json.dumps({"camera": event.camera, "at": event.captured_at})
                    pipe.set(self.seen_key(event.identity_id), sighting)
            for event in ended:
                pipe.hdel(self.present_key, f"{event.camera}/{event.track_id}")
            pipe.execute()

    def snapshot(self, identity_ids: Iterable[str]) -> PresenceSnapshot:
        """Present tracks, the last sightings of ``identity_ids``, and the cameras seen.

        Raises:
            RedisUnavailableError: Redis cannot be reached.
        """
        ids = list(identity_ids)
        with redis_errors(), self._client.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.present_key)
            pipe.smembers(self.cameras_key)
            for identity_id in ids:
                pipe.get(self.seen_key(identity_id))
            raw_present, raw_cameras, *raw_seen = pipe.execute()
        present = []
        for raw_field, raw_value in cast(dict[bytes, bytes], raw_present).items():
            camera, _, track_id = text(raw_field).partition("/")
            value = json.loads(raw_value)
            present.append(Presence(camera, track_id, value["identity_id"], value["since"]))
        present.sort(key=lambda presence: (presence.camera, presence.since, presence.track_id))
        seen = {
            identity_id: Sighting(**json.loads(raw))
            for identity_id, raw in zip(ids, raw_seen, strict=True)
            if raw is not None
        }
        cameras = {text(camera) for camera in cast(set[bytes], raw_cameras)}
        return PresenceSnapshot(present, seen, cameras)

    def forget_absent(self, enrolled: Iterable[str]) -> int:
        """Drop present tracks of people no longer enrolled (erased or deleted); how many.

        Raises:
            RedisUnavailableError: Redis cannot be reached.
        """
        known = set(enrolled)
        with redis_errors():
            raw = cast(dict[bytes, bytes], self._client.hgetall(self.present_key))
            stale = [
                field
                for field, value in raw.items()
                if (identity_id := json.loads(value)["identity_id"]) is not None and identity_id not in known
            ]
            if stale:
                self._client.hdel(self.present_key, *stale)
        return len(stale)

    def retained(self) -> dict[str, str]:
        """Retained topics the bridge published and has not cleared: topic -> identity id or ""."""
        with redis_errors():
            raw = cast(dict[bytes, bytes], self._client.hgetall(self.retained_key))
        return {text(topic): text(owner) for topic, owner in raw.items()}

    def remember_retained(self, topics: Mapping[str, str]) -> None:
        """Record retained topics before they are published (so a crash cannot lose track of one)."""
        if topics:
            with redis_errors():
                self._client.hset(
                    self.retained_key, mapping={topic: owner for topic, owner in topics.items()}
                )

    def forget_retained(self, topics: Iterable[str]) -> None:
        """Drop topics the broker has acknowledged as cleared."""
        cleared = list(topics)
        if cleared:
            with redis_errors():
                self._client.hdel(self.retained_key, *cleared)
