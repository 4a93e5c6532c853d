"""The MQTT bridge: Vigil's events on an MQTT broker, with retained presence and Home Assistant discovery.

``run_mqtt_bridge`` (``vigil bridge mqtt``, or a child process of ``vigil run``) reads the
events stream through the ``mqtt`` bridge's consumer group (``streamer.bridges.source``) and
publishes, at ``bridges.mqtt.qos`` (1: the broker acknowledges each message):

- every event passing the filter on ``{prefix}/events`` and on
  ``{prefix}/<camera>/<person slug | unknown>`` (the event's JSON, ``docs/events.md``);
- retained state: ``{prefix}/<camera>/present`` and ``{prefix}/person/<slug>``
  (``streamer.bridges.mqtt_payloads``), ``{prefix}/bridge/status`` (``online``; ``offline`` is
  the last will), and, opted in, Home Assistant discovery configs
  (``streamer.bridges.home_assistant``).

Delivery: a batch of events is acknowledged on the stream only once the broker has acknowledged
every message of it, so a broker killed mid-run loses nothing: the bridge reconnects with
back-off and the unacknowledged messages go out again (a consumer may see a message twice only
if the broker got it and its acknowledgement was lost: drop the repeat by ``event_id``).
Events older than ``bridges.mqtt.max_age_s`` (since capture) are not published but counted as
dropped (``target="stream"``), as ``BridgeSource`` does for the other bridges; the bridge checks
the age itself, after the presence state has taken their ``track_ended`` events: a track must
leave its camera however late its end is read.

Retained topics are declarative: after each batch, each change of the gallery and each new
connection, the bridge computes every retained topic it should hold (from its state in Redis,
``streamer.bridges.mqtt_state``, and the gallery's people), publishes those that changed (all of
them on a new connection: a restarted broker may have lost them) and clears (empty retained
payload) those it holds that are no longer wanted: people deleted or erased, also while the
bridge was down, renamed people's old slugs, discovery configs once discovery is turned off.
The gallery is polled for its version every ``PEOPLE_POLL_S``.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Sequence
from pathlib import Path

import redis

from indexer.gallery import Gallery
from indexer.records import Identity
from streamer import metrics
from streamer.bridges.filters import event_passes
from streamer.bridges.home_assistant import DiscoveryContext
from streamer.bridges.mqtt_client import BRIDGE, TARGET, BrokerLink, Message
from streamer.bridges.mqtt_payloads import RetainedTopic, desired_topics
from streamer.bridges.mqtt_state import StateStore
from streamer.bridges.mqtt_topics import RESERVED_CAMERAS, Topics, person_slugs, slug
from streamer.bridges.source import SOURCE_TARGET, BridgeEvent, BridgeSource, event_time_s
from streamer.events import Event, EventType
from vigil import __version__
from vigil.config import Settings
from vigil.config.bridges import BridgeFilter
from vigil.errors import ConfigError, RedisUnavailableError
from vigil.retry import REDIS_RETRY_POLICY, Backoff
from vigil.stop import StopFlag, pause
from vigil.streams import connect_redis

logger = logging.getLogger(__name__)

# How often the bridge asks the gallery whether people were enrolled, renamed or deleted: one GET
# of its version counter; a change costs one listing of the people.
PEOPLE_POLL_S = 2.0
# How often the lag gauge is refreshed.
LAG_REPORT_S = 1.0
# Events read (and published) per batch, and how long a read waits for new ones.
BATCH_EVENTS = 100
READ_BLOCK_MS = 500
# The service's gallery (``Gallery``'s default namespace).
GALLERY_NAMESPACE = "vigil"
_ALL_TYPES: list[str] = ["recognized", "unknown", "track_ended"]


def state_key_base(settings: Settings) -> str:
    """Prefix of the bridge's Redis keys (``mqtt_state``): beside the events stream it follows."""
    return f"{settings.streamer.events.stream}:bridge:mqtt"


def check_mqtt_settings(settings: Settings) -> None:
    """Fast checks before any connection: camera names that would collide with the bridge's topics,
    TLS files that are missing, a broker host name that does not resolve.

    Raises:
        ConfigError: One of those, in one line.
    """
    config = settings.bridges.mqtt
    for camera in settings.streamer.cameras:
        if camera.name in RESERVED_CAMERAS:
            raise ConfigError(
                f"camera {camera.name!r} would publish on {config.topic_prefix}/{camera.name}/..., "
                "which the MQTT bridge uses for its own topics; rename the camera "
                f"(not {' or '.join(sorted(RESERVED_CAMERAS))})"
            )
    for name, path in (
        ("ca_file", config.tls.ca_file),
        ("cert_file", config.tls.cert_file),
        ("key_file", config.tls.key_file),
    ):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"bridges.mqtt.tls.{name} {path!r} is not a file")
    try:
        socket.getaddrinfo(config.host, config.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(
            f"unknown MQTT broker host {config.host!r} ({exc.strerror}); fix bridges.mqtt.url"
        ) from None


def run_mqtt_bridge(
    settings: Settings, stop: StopFlag, *, gallery_namespace: str = GALLERY_NAMESPACE
) -> None:
    """Relay events to the broker until ``stop`` is set (see the module docstring).

    Rides out Redis and broker outages with back-off.

    Args:
        settings: Vigil's settings.
        stop: Set to stop (the bridge then says ``offline`` and disconnects).
        gallery_namespace: Key prefix of the gallery whose people it follows (the service's: ``vigil``).

    Raises:
        ConfigError: A permanent configuration problem: unknown broker host, refused
            credentials, unusable TLS files, a camera name the topics cannot hold.
    """
    check_mqtt_settings(settings)
    bridge = MqttBridge(settings, gallery_namespace)
    try:
        bridge.run(stop)
    finally:
        bridge.close()


class MqttBridge:
    """The bridge's long-lived objects and its loop (one thread; see ``run_mqtt_bridge``).

    Args:
        settings: Vigil's settings (``bridges.mqtt``, ``bridges.filter``, the events stream).
        gallery_namespace: Key prefix of the gallery whose people it follows.

    Raises:
        ConfigError: Unreadable TLS files.
    """

    def __init__(self, settings: Settings, gallery_namespace: str = GALLERY_NAMESPACE) -> None:
        self.gallery_namespace = gallery_namespace
        config = settings.bridges.mqtt
        self.settings = settings
        self.config = config
        self.topics = Topics(config.topic_prefix)
        self.rule: BridgeFilter = settings.bridges.mqtt_filter
        # Presence follows track_ended events even when the published types leave them out.
        self.state_rule = self.rule.model_copy(update={"types": _ALL_TYPES})
        self.discovery = (
            DiscoveryContext(
                config.home_assistant.discovery_prefix,
                self.topics.status,
                config.client_id,
                __version__,
                config.qos,
            )
            if config.home_assistant.enabled
            else None
        )
        self.configured_cameras = [camera.name for camera in settings.streamer.cameras]
        self.link = BrokerLink(config, self.topics.status)
        self._redis: redis.Redis | None = None
        self._source: BridgeSource | None = None
        self._store: StateStore | None = None
        self._gallery: Gallery | None = None
        self.people: dict[str, Identity] = {}
        self.slugs: dict[str, str] = {}
        self._gallery_version: int | None = None
        self._next_people_poll = 0.0
        self._next_lag_report = 0.0
        # Retained topics: what the broker was sent on this connection, and what Redis records.
        self._published: dict[str, str] = {}
        self._recorded: dict[str, str] = {}
        self._synced_connection = 0
        self._retained_stale = True

    def run(self, stop: StopFlag) -> None:
        """Connect, then publish batch after batch until ``stop`` is set."""
        if not self.link.connect(stop):
            return
        backoff = Backoff(REDIS_RETRY_POLICY)
        while not stop.is_set():
            started = time.monotonic()
            try:
                self._open_redis()
                self._step(stop)
                backoff.succeeded()
            except RedisUnavailableError as exc:
                metrics.REDIS_ERRORS.labels(component="bridge", error=exc.kind.value).inc()
                self._drop_redis()
                delay_s = backoff.failed(time.monotonic() - started)
                log = logger.warning if backoff.failures == 1 else logger.debug
                log("MQTT bridge: %s; retrying in %.1f s", exc, delay_s)
                end = time.monotonic() + delay_s
                while not stop.is_set() and time.monotonic() < end:
                    self.link.service(0.1)  # keep the broker connection alive meanwhile
                    pause(stop, 0.05)

    def close(self) -> None:
        self.link.close(self.topics.status)
        if self._redis is not None:
            self._redis.close()

    # -- one step of the loop ------------------------------------------------------------------

    def _step(self, stop: StopFlag) -> None:
        now = time.monotonic()
        if now >= self._next_people_poll:
            self._next_people_poll = now + PEOPLE_POLL_S
            self._refresh_people()
        if self.link.connections != self._synced_connection:
            self._published.clear()  # a new connection: the broker may have lost every retained message
            self._retained_stale = True
        if self._retained_stale and not self._sync_retained(stop):
            return
        batch = self._require_source().read(stop, count=BATCH_EVENTS, block_ms=READ_BLOCK_MS)
        if batch:
            self._deliver(batch, stop)
        else:
            self.link.service(0.0)
            if not self.link.connected:
                self.link.connect(stop)
        if now >= self._next_lag_report:
            self._next_lag_report = now + LAG_REPORT_S
            self._require_source().report_lag()

    def _deliver(self, batch: Sequence[BridgeEvent], stop: StopFlag) -> None:
        """Publish a batch, update the retained topics, and ack it once the broker has everything."""
        events = [item.event for item in batch]
        if any(event.identity_id is not None and event.identity_id not in self.people for event in events):
            self._refresh_people()  # enrolled since the last poll: name them right away
        now_s = time.time()
        fresh = [item.event for item in batch if self._fresh(item, now_s)]
        too_old = len(events) - len(fresh)
        passing = [event for event in fresh if event_passes(event, self.rule)]
        # Presence follows the events passing the filter, fresh ones or track_ended ones of any age
        # (the track must leave, however late); a track_ended filtered out (e.g. naming a person, with
        # unknown_only, after the track's unknown event passed) still takes its track off its camera.
        shown: list[Event] = []
        ended: list[Event] = []
        for item in batch:
            ending = item.event.type is EventType.TRACK_ENDED
            if event_passes(item.event, self.state_rule):
                if ending or self._fresh(item, now_s):
                    shown.append(item.event)
            elif ending:
                ended.append(item.event)
        self._require_store().apply(shown, ended)
        messages: list[Message] = []
        for event in passing:
            payload = event.to_json()
            messages.append(Message(self.topics.events, payload))
            messages.append(Message(self.topics.event(event.camera, self._person_level(event)), payload))
        retained, cleared = self._retained_changes()
        if not self.link.publish(messages + retained, stop):
            return  # stopping: the batch stays pending and goes out again on the next start
        self._confirm(retained, cleared)
        self._require_source().ack([item.stream_id for item in batch])
        counter = metrics.BRIDGE_EVENTS
        if passing:
            counter.labels(bridge=BRIDGE, target=TARGET, outcome="delivered").inc(len(passing))
        if len(passing) < len(fresh):
            counter.labels(bridge=BRIDGE, target=TARGET, outcome="filtered").inc(len(fresh) - len(passing))
        if too_old:
            counter.labels(bridge=BRIDGE, target=SOURCE_TARGET, outcome="dropped").inc(too_old)
            logger.warning(
                "bridge %s: dropped %d event(s) older than %.0f s (bridges.%s.max_age_s)",
                BRIDGE,
                too_old,
                self.config.max_age_s,
                BRIDGE,
            )
        logger.debug("MQTT bridge: published %d of %d event(s)", len(passing), len(events))

    def _fresh(self, item: BridgeEvent, now_s: float) -> bool:
        """Whether the event is young enough to publish (``bridges.mqtt.max_age_s``, since its capture)."""
        return now_s - event_time_s(item.event, item.stream_id) <= self.config.max_age_s

    def _person_level(self, event: Event) -> str | None:
        if event.identity_id is None:
            return None
        known = self.slugs.get(event.identity_id)
        return known if known is not None else slug(event.name or "", event.identity_id)

    # -- retained topics -----------------------------------------------------------------------

    def _sync_retained(self, stop: StopFlag) -> bool:
        """Publish the retained topics that changed and clear those no longer wanted; False if stopped."""
        connection = self.link.connections
        retained, cleared = self._retained_changes()
        if retained and not self.link.publish(retained, stop):
            return False
        self._confirm(retained, cleared)
        self._synced_connection = connection
        self._retained_stale = False
        return True

    def _retained_changes(self) -> tuple[list[Message], list[str]]:
        """Messages that bring the broker's retained topics up to date, and the topics they clear.

        Topics are recorded in Redis before they are published, so that a crash between the two
        cannot leave a retained topic the bridge does not know it must clear one day.
        """
        store = self._require_store()
        snapshot = store.snapshot(self.people)
        wanted = desired_topics(
            self.topics, self.people, self.slugs, snapshot, self.configured_cameras, self.discovery
        )
        changed: list[RetainedTopic] = [
            topic for topic in wanted.values() if self._published.get(topic.topic) != topic.payload
        ]
        new = {
            topic.topic: topic.owner for topic in changed if self._recorded.get(topic.topic) != topic.owner
        }
        store.remember_retained(new)
        self._recorded.update(new)
        cleared = [topic for topic in self._recorded if topic not in wanted]
        messages = [Message(topic.topic, topic.payload, retain=True) for topic in changed]
        messages += [Message(topic, "", retain=True) for topic in cleared]
        return messages, cleared

    def _confirm(self, retained: Sequence[Message], cleared: Sequence[str]) -> None:
        """The broker acknowledged ``retained``: remember what it holds; forget the cleared topics."""
        for message in retained:
            if message.payload:
                self._published[message.topic] = message.payload
        if cleared:
            self._require_store().forget_retained(cleared)
            for topic in cleared:
                self._recorded.pop(topic, None)
                self._published.pop(topic, None)
            logger.info("MQTT bridge: cleared %d retained topic(s)", len(cleared))

    # -- people ----------------------------------------------------------------------------------

    def _refresh_people(self) -> bool:
        """Re-read the people if the gallery changed; whether it did."""
        gallery = self._require_gallery()
        version = gallery.version()
        if version == self._gallery_version:
            return False
        people = gallery.list_identities()
        self.people = {person.identity_id: person for person in people}
        self.slugs = person_slugs(people)
        self._gallery_version = version
        self._retained_stale = True
        forgotten = self._require_store().forget_absent(self.people)
        logger.info(
            "MQTT bridge: %d enrolled people (gallery version %d)%s",
            len(people),
            version,
            f"; dropped {forgotten} present track(s) of people no longer enrolled" if forgotten else "",
        )
        return True

    # -- Redis -------------------------------------------------------------------------------------

    def _open_redis(self) -> None:
        if self._redis is not None:
            return
        client = connect_redis(self.settings.redis, self.settings.home)
        self._redis = client
        if self._source is None:
            # No age limit here: too-old events are dropped by ``_deliver``, after their
            # track_ended has ended presence.
            self._source = BridgeSource(client, self.settings, BRIDGE, None)
        else:
            self._source.use_connection(client)
        self._source.ensure_group()
        self._store = StateStore(client, state_key_base(self.settings))
        self._gallery = Gallery(client, self.gallery_namespace)
        self._recorded = self._store.retained()
        self._gallery_version = None
        self._next_people_poll = 0.0
        self._refresh_people()

    def _drop_redis(self) -> None:
        if self._redis is not None:
            self._redis.close()
        self._redis = None

    def _require_source(self) -> BridgeSource:
        assert self._source is not None, "Redis is opened first"
        return self._source

    def _require_store(self) -> StateStore:
        assert self._store is not None, "Redis is opened first"
        return self._store

    def _require_gallery(self) -> Gallery:
        assert self._gallery is not None, "Redis is opened first"
        return self._gallery
