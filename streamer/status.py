"""The service's status, as ``vigil status`` and the API show it: sources, workers, bus, gallery, Redis,
and how far each bridge is behind the events stream.

Everything is read from Redis, where the readers and workers report themselves (``vigil:sources``,
and heartbeats in ``vigil:workers``), so it works from any machine that reaches the service's
Redis, also when Redis refuses writes (full, cannot persist, a replica).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from vigil.config import Settings
from vigil.errors import VigilError
from vigil.streams import RedisHealth


@dataclass(frozen=True)
class ModelTemplates:
    """How many people and templates the gallery holds in one embedding space."""

    people: int
    templates: int


@dataclass(frozen=True)
class ServiceStatus:
    """What ``service_status`` read.

    Attributes:
        sources: Camera name → its reader's last report (``state``, ``frames``, ``reason``...).
        workers: Worker name → its heartbeat (``frames``, ``gallery_version``, ``detector``,
            ``embedder``...), live workers only (heard from within three heartbeats).
        bus_waiting: Frames on the bus no worker has taken yet.
        bus_pending: Frames taken by a worker and not yet acknowledged.
        gallery_version: The gallery's version counter.
        gallery_models: Embedding space (``embedder_version``) → its people and templates.
        redis: The server's memory, and whether it refuses writes.
        bridges: Bridge (``mqtt``, ``webhooks``) → its lag: events in the stream it has not
            delivered yet. Bridges enabled in the settings read here, or with a consumer group on
            the stream (configured on the service's machine); 0 for an enabled bridge whose group
            does not exist yet (it never ran).
    """

    sources: dict[str, dict[str, Any]]
    workers: dict[str, dict[str, Any]]
    bus_waiting: int
    bus_pending: int
    gallery_version: int
    gallery_models: dict[str, ModelTemplates]
    redis: RedisHealth
    bridges: dict[str, int] = field(default_factory=dict)

    @property
    def ever_ran(self) -> bool:
        """Whether a service or worker has reported here (a fresh data directory has none)."""
        return bool(self.sources or self.workers)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready, as ``vigil status --json`` prints it."""
        return {
            "sources": self.sources,
            "workers": self.workers,
            "bus": {"waiting": self.bus_waiting, "pending": self.bus_pending},
            "gallery_version": self.gallery_version,
            "gallery_models": {
                version: {"people": size.people, "templates": size.templates}
                for version, size in self.gallery_models.items()
            },
            "redis": {
                "refusals": [kind.value for kind in self.redis.refusals],
                "used_memory_bytes": self.redis.used_memory_bytes,
                "maxmemory_bytes": self.redis.maxmemory_bytes,
                "maxmemory_policy": self.redis.maxmemory_policy,
                "loading": self.redis.loading,
            },
            "bridges": {name: {"lag": lag} for name, lag in self.bridges.items()},
        }


def service_status(settings: Settings, client: redis.Redis | None = None) -> ServiceStatus:
    """Read the service's status from its Redis (``client``, or a connection of its own).

    Raises:
        RedisUnavailableError: Redis cannot be reached.
    """
    from indexer.gallery import Gallery
    from streamer.bus import FrameBus
    from streamer.feed import SOURCES_KEY
    from streamer.worker import HEARTBEAT_EVERY_S, WORKERS_KEY
    from vigil.streams import connect_frames_redis, connect_redis, redis_errors, redis_health, text

    client = client if client is not None else connect_redis(settings.redis, settings.home)
    with redis_errors():
        sources = {text(k): json.loads(v) for k, v in client.hgetall(SOURCES_KEY).items()}
        workers = {text(k): json.loads(v) for k, v in client.hgetall(WORKERS_KEY).items()}
    health = redis_health(client)
    try:
        frames_client = connect_frames_redis(settings.redis, settings.home, start=False)
        waiting, pending = FrameBus(frames_client, settings.streamer.bus).backlog()
    except (VigilError, Exception):  # no bus yet: the service never ran here
        waiting, pending = 0, 0
    now = time.time()
    alive = {name: beat for name, beat in workers.items() if now - beat["seen_at"] < 3 * HEARTBEAT_EVERY_S}
    gallery = Gallery(client)
    spaces = gallery.templates_by_space()
    models = {
        version: ModelTemplates(spaces.people(version), spaces.templates(version))
        for version in spaces.versions()
    }
    bridges = bridge_lags(client, settings)
    return ServiceStatus(sources, alive, waiting, pending, gallery.version(), models, health, bridges)


def bridge_lags(client: redis.Redis, settings: Settings) -> dict[str, int]:
    """Each bridge's lag behind the events stream: those enabled in ``settings`` or with a group there.

    Raises:
        RedisUnavailableError: Redis cannot be reached.
    """
    from streamer.bridges.source import BRIDGES, group_name
    from vigil.streams import redis_errors, text

    stream = settings.streamer.events.stream
    with redis_errors():
        try:
            groups = {text(entry["name"]) for entry in client.xinfo_groups(stream)}
        except redis.ResponseError:  # no events stream yet
            groups = set()
    enabled = settings.bridges.enabled_bridges()
    return {
        bridge: bridge_lag(client, settings, bridge)
        for bridge in BRIDGES
        if bridge in enabled or group_name(bridge) in groups
    }


def bridge_lag(client: redis.Redis, settings: Settings, bridge: str) -> int:
    """Events ``bridge`` has not delivered yet: unacknowledged in the events stream and, for the
    webhooks bridge, still waiting in an endpoint's queue (the longest).

    Raises:
        RedisUnavailableError: Redis cannot be reached.
    """
    from streamer.bridges.source import group_lag, group_name

    if bridge == "webhooks":
        from streamer.bridges.webhooks import webhooks_lag

        return webhooks_lag(client, settings)
    return group_lag(client, settings.streamer.events.stream, group_name(bridge))
