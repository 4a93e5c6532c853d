"""The MQTT bridge against a real Mosquitto broker and a real Redis: topics, retained state, delivery.

Events are written with the service's own ``EventPublisher`` to an events stream of the test's own
(``bridge_settings``); the bridge (``run_mqtt_bridge``) runs in a thread; a real paho subscriber
reads what reaches the broker.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import REGISTRY

from indexer.erase import StreamKeys, erase_person
from indexer.gallery import Gallery
from indexer.records import Identity
from indexer.sources import SourceStore
from streamer.bridges.mqtt import run_mqtt_bridge, state_key_base
from streamer.bridges.mqtt_topics import person_slugs, slug
from streamer.bridges.source import BridgeSource, group_lag
from streamer.events import Event, EventPublisher, EventType, event_id_for, iso_time
from tests.streamer.bridges.conftest import MosquittoBroker
from tests.streamer.test_events import make_event
from vigil.config import Settings
from vigil.errors import VigilError

pytestmark = pytest.mark.redis

# Generous bounds for what takes milliseconds, so a loaded machine cannot fail the tests.
WAIT_S = 10.0
# How long a fresh subscriber waits for the broker's retained messages (sent right after SUBSCRIBE).
RETAINED_WAIT_S = 1.0


# -- helpers ---------------------------------------------------------------------------------------


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool


@dataclass
class Subscriber:
    """A real paho client subscribed to ``topics`` (QoS 1), recording every message it gets.

    With ``session`` (a fixed client id, clean session off) the broker keeps its subscription and
    queues its QoS 1 messages while it is away, also across a broker restart (persistence on).
    """

    broker: MosquittoBroker
    topics: tuple[str, ...] = ("#",)
    session: str | None = None
    messages: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _subscribed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.session or "",
            clean_session=self.session is None,
            protocol=paho.MQTTv311,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)

    def __enter__(self) -> Subscriber:
        self.client.connect_async(
            self.broker.host, self.broker.port
        )  # connect() + loop_start() leaks a socket pair
        self.client.loop_start()
        assert self._subscribed.wait(WAIT_S), "the subscriber could not subscribe"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: paho.Client, *_: Any) -> None:
        client.subscribe([(topic, 1) for topic in self.topics])

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(message.topic, bytes(message.payload), bool(message.retain)))

    def on(self, topic: str) -> list[Received]:
        with self._lock:
            return [message for message in self.messages if message.topic == topic]

    def wait_for(self, condition: Callable[[], object], what: str, timeout_s: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}; got {self.topics_seen()}"
            time.sleep(0.02)

    def topics_seen(self) -> list[str]:
        with self._lock:
            return [message.topic for message in self.messages]


def retained(broker: MosquittoBroker, *topics: str) -> dict[str, dict[str, Any] | str]:
    """What a fresh subscriber gets as retained messages under ``topics``: topic -> JSON (or text)."""
    with Subscriber(broker, topics) as fresh:
        time.sleep(RETAINED_WAIT_S)
        found: dict[str, dict[str, Any] | str] = {}
        for message in fresh.messages:
            if message.retain and message.payload:
                text = message.payload.decode()
                found[message.topic] = json.loads(text) if text.startswith("{") else text
        return found


class BridgeThread:
    """``run_mqtt_bridge`` in a thread, stopped (and joined) on exit; its exception, if any."""

    def __init__(self, settings: Settings, namespace: str) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(settings, namespace), daemon=True)

    def _run(self, settings: Settings, namespace: str) -> None:
        try:
            run_mqtt_bridge(settings, self.stop, gallery_namespace=namespace)
        except BaseException as exc:  # handed to the test
            self.error = exc

    def __enter__(self) -> BridgeThread:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self._thread.join(WAIT_S)
        assert not self._thread.is_alive(), "the bridge did not stop"
        if self.error is not None and exc_info[0] is None:
            raise self.error

    def join(self, timeout_s: float = WAIT_S) -> BaseException | None:
        """Wait for the bridge to end on its own (a start-up error); the error."""
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"the bridge still runs after {timeout_s} s"
        return self.error


def mqtt_settings(settings: Settings, broker: MosquittoBroker, **mqtt: Any) -> Settings:
    """``settings`` with the MQTT bridge pointed at ``broker`` (and ``mqtt`` fields changed)."""
    fields: dict[str, Any] = {"enabled": True, "url": broker.url, "client_id": f"vigil-test-{broker.port}"}
    fields.update(mqtt)
    bridges = settings.bridges.model_copy(update={"mqtt": settings.bridges.mqtt.model_validate(fields)})
    return settings.model_copy(update={"bridges": bridges})


def namespace_of(settings: Settings) -> str:
    """The test's key namespace (``bridge_settings`` puts the events stream in it)."""
    return settings.streamer.events.stream.split(":", 1)[0]


def event(kind: EventType, track: str, person: Identity | None, camera: str = "door") -> Event:
    """An event captured now, of ``track``, with the id the tracker would give it."""
    return make_event(
        camera=camera,
        identity_id=person.identity_id if person else None,
        name=person.name if person else None,
        kind=kind,
        captured_at=iso_time(time.time()),
        track_id=track,
        event_id=event_id_for(track, kind),
    )


def erase(settings: Settings, gallery: Gallery, person: Identity) -> None:
    """The real erasure (``vigil people delete``), without rewriting the shared server's files."""
    streams = StreamKeys.from_settings(settings)
    erase_person(
        gallery, SourceStore.from_settings(settings), person.identity_id, streams, rewrite_files=False
    )


def counter(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def client(bridge_settings: Settings) -> Iterator[redis.Redis]:
    redis_client = redis.Redis.from_url(str(bridge_settings.redis.url))
    yield redis_client
    redis_client.close()


@pytest.fixture
def gallery(client: redis.Redis, bridge_settings: Settings) -> Gallery:
    """The test's gallery, in its namespace (cleaned at teardown with the events stream)."""
    return Gallery(client, namespace_of(bridge_settings))


@pytest.fixture
def publisher(client: redis.Redis, bridge_settings: Settings) -> EventPublisher:
    return EventPublisher(client, bridge_settings.streamer.events)


def ensure_group(settings: Settings, client: redis.Redis) -> None:
    """Create the bridge's group before events are written (``vigil run`` does it before the tracker)."""
    BridgeSource(client, settings, "mqtt", None).ensure_group()


# -- the slug rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Barack Obama", "barack-obama"),  # spaces become one hyphen, lower case
        ("José Núñez", "jose-nunez"),  # accents dropped
        ("O'Neil / Smith #2", "o-neil-smith-2"),  # topic separators and wildcards never survive
        ("a+b", "a-b"),  # the single-level wildcard
        ("  --Ada--  ", "ada"),  # no leading or trailing hyphens
        ("李雷", "person-9f86d081"),  # nothing left: person-<id prefix>
    ],
)
def test_slug_is_one_topic_level(name: str, expected: str) -> None:
    # given a name, when slugged, then it is one safe topic level
    level = slug(name, "9f86d081884c7d65")
    assert level == expected, f"slug({name!r})"
    assert not set(level) & set("/+#"), "a slug must hold no topic separator or wildcard"


def test_person_slugs_never_share_a_topic() -> None:
    # given two names with one slug, and a name that is a reserved level
    people = [
        Identity("aaaaaaaa1111", "Ann Lee", {}, "", ""),
        Identity("bbbbbbbb2222", "ann lee", {}, "", ""),
        Identity("cccccccc3333", "Present", {}, "", ""),
        Identity("dddddddd4444", "Grace Hopper", {}, "", ""),
    ]
    # when slugged together
    slugs = person_slugs(people)
    # then each person has a topic level of their own, reserved words are suffixed
    assert slugs == {
        "aaaaaaaa1111": "ann-lee-aaaaaaaa",
        "bbbbbbbb2222": "ann-lee-bbbbbbbb",
        "cccccccc3333": "present-cccccccc",
        "dddddddd4444": "grace-hopper",
    }


# -- topics and retained state ---------------------------------------------------------------------


def test_events_reach_their_topics_and_presence_is_retained(
    mosquitto: MosquittoBroker,
    bridge_settings: Settings,
    client: redis.Redis,
    gallery: Gallery,
    publisher: EventPublisher,
) -> None:
    # given an enrolled person, a running bridge and a subscriber to everything
    ada = gallery.create_identity("Ada Lovelace")
    settings = mqtt_settings(bridge_settings, mosquitto)
    ensure_group(settings, client)
    delivered_before = counter(
        "vigil_bridge_events_total", {"bridge": "mqtt", "target": "broker", "outcome": "delivered"}
    )
    with Subscriber(mosquitto, ("vigil/#",)) as subscriber, BridgeThread(settings, namespace_of(settings)):
        # when Ada is recognized on the door camera, next to an unknown face
        recognized = event(EventType.RECOGNIZED, "door-t1", ada)
        unknown = event(EventType.UNKNOWN, "door-t2", None)
        publisher.publish(recognized)
        publisher.publish(unknown)
        # then each event is on vigil/events and on its camera/person topic, as the event's JSON
        subscriber.wait_for(lambda: len(subscriber.on("vigil/events")) == 2, "two events on vigil/events")
        subscriber.wait_for(lambda: subscriber.on("vigil/door/unknown"), "the unknown event")
        by_person = subscriber.on("vigil/door/ada-lovelace")
        assert len(by_person) == 1, "one message per event on the camera/person topic"
        assert Event.model_validate_json(by_person[0].payload) == recognized, "the payload is the event"
        assert not by_person[0].retain, "event topics are not retained"
        ids = [json.loads(message.payload)["event_id"] for message in subscriber.on("vigil/events")]
        assert ids == [recognized.event_id, unknown.event_id], "in stream order"

        # and the retained state says who is there
        def door() -> dict[str, Any]:
            messages = subscriber.on("vigil/door/present")
            return json.loads(messages[-1].payload) if messages else {}

        subscriber.wait_for(lambda: door().get("count") == 2, "two tracks on the door")
        assert door()["unknown"] == 1
        assert [person["name"] for person in door()["people"]] == ["Ada Lovelace"]
        # when Ada's track ends (track_ended is not published by the default filter, but ends presence)
        publisher.publish(event(EventType.TRACK_ENDED, "door-t1", ada))
        subscriber.wait_for(lambda: door().get("count") == 1, "Ada gone from the door")
        assert door()["people"] == []
        assert not subscriber.on("vigil/door/ada-lovelace")[1:], "track_ended is filtered out by default"
    # then a fresh subscriber gets the retained state: Ada's last sighting, the door, the status
    state = retained(mosquitto, "vigil/#")
    person = state["vigil/person/ada-lovelace"]
    assert isinstance(person, dict)
    assert person["present"] is False and person["last_camera"] == "door" and person["last_seen"]
    assert person["identity_id"] == ada.identity_id
    assert state["vigil/bridge/status"] == "offline", "a stopped bridge says offline"
    delivered = counter(
        "vigil_bridge_events_total", {"bridge": "mqtt", "target": "broker", "outcome": "delivered"}
    )
    assert delivered - delivered_before == 2, "the two events passing the filter count as delivered"
    assert client.xpending(settings.streamer.events.stream, "vigil-bridge-mqtt")["pending"] == 0, "all acked"


def test_the_filter_decides_what_is_published_and_presence_follows_its_cameras(
    mosquitto: MosquittoBroker,
    bridge_settings: Settings,
    client: redis.Redis,
    gallery: Gallery,
    publisher: EventPublisher,
) -> None:
    # given a filter for unknown faces on the door camera only, with track_ended events
    ada = gallery.create_identity("Ada Lovelace")
    rule = {"unknown_only": True, "cameras": ["door"], "types": ["unknown", "track_ended"]}
    settings = mqtt_settings(bridge_settings, mosquitto, filter=rule)
    ensure_group(settings, client)
    filtered_before = counter(
        "vigil_bridge_events_total", {"bridge": "mqtt", "target": "broker", "outcome": "filtered"}
    )
    with Subscriber(mosquitto, ("vigil/#",)) as subscriber, BridgeThread(settings, namespace_of(settings)):
        # when Ada and an unknown face come to the door, and an unknown face to the hall
        stranger = event(EventType.UNKNOWN, "door-u1", None)
        for item in (
            event(EventType.RECOGNIZED, "door-a1", ada),
            stranger,
            event(EventType.UNKNOWN, "hall-u2", None, camera="hall"),
            event(EventType.TRACK_ENDED, "door-u1", None),
        ):
            publisher.publish(item)
        # then only the door's unknown face is published, its start and its end
        subscriber.wait_for(lambda: len(subscriber.on("vigil/events")) == 2, "the door's unknown face")
        types = [json.loads(message.payload)["type"] for message in subscriber.on("vigil/door/unknown")]
        assert types == ["unknown", "track_ended"]
        subscriber.wait_for(lambda: subscriber.on("vigil/door/present"), "the door's presence")
        time.sleep(0.5)  # room for anything filtered out to show up
        assert not subscriber.on("vigil/door/ada-lovelace") and not subscriber.on("vigil/hall/unknown")
        assert not subscriber.on("vigil/hall/present"), "presence follows the filter's cameras"
        assert json.loads(subscriber.on("vigil/door/present")[-1].payload)["count"] == 0
    filtered = counter(
        "vigil_bridge_events_total", {"bridge": "mqtt", "target": "broker", "outcome": "filtered"}
    )
    assert filtered - filtered_before == 2, "Ada's event and the hall's are counted as filtered"


def test_a_track_filtered_out_once_recognized_still_leaves_presence(
    mosquitto: MosquittoBroker,
    bridge_settings: Settings,
    client: redis.Redis,
    gallery: Gallery,
    publisher: EventPublisher,
) -> None:
    # given a filter for unknown faces only, and a running bridge
    ada = gallery.create_identity("Ada Lovelace")
    settings = mqtt_settings(bridge_settings, mosquitto, filter={"unknown_only": True, "types": ["unknown"]})
    ensure_group(settings, client)
    present_key = f"{state_key_base(settings)}:present"
    with Subscriber(mosquitto, ("vigil/#",)) as subscriber, BridgeThread(settings, namespace_of(settings)):

        def door_count() -> int | None:
            messages = subscriber.on("vigil/door/present")
            return int(json.loads(messages[-1].payload)["count"]) if messages else None

        # when a track is first an unknown face (it passes: the door has one track)
        publisher.publish(event(EventType.UNKNOWN, "door-t1", None))
        subscriber.wait_for(lambda: door_count() == 1, "the unknown face on the door")
        # and is then recognized as Ada, and ends (both name a person: filtered out)
        publisher.publish(event(EventType.RECOGNIZED, "door-t1", ada))
        publisher.publish(event(EventType.TRACK_ENDED, "door-t1", ada))
        # then the track leaves the door all the same
        subscriber.wait_for(lambda: door_count() == 0, "the track gone from the door")
        assert not client.hgetall(present_key), "no track left present in Redis"
        assert not subscriber.on("vigil/door/ada-lovelace"), "Ada's events stay filtered out"
        seen_key = f"{state_key_base(settings)}:seen:{ada.identity_id}"
        assert not client.exists(seen_key), "a filtered-out track_ended records no sighting"


def test_a_track_ended_older_than_max_age_still_ends_presence(
    mosquitto: MosquittoBroker,
    bridge_settings: Settings,
    client: redis.Redis,
    gallery: Gallery,
    publisher: EventPublisher,
) -> None:
    # given Ada present on the door, published by a bridge with a 5 s max_age_s
    ada = gallery.create_identity("Ada Lovelace")
    settings = mqtt_settings(
        bridge_settings, mosquitto, max_age_s=5, filter={"types": ["recognized", "track_ended"]}
    )
    ensure_group(settings, client)
    dropped = {"bridge": "mqtt", "target": "stream", "outcome": "dropped"}
    with Subscriber(mosquitto, ("vigil/#",)) as subscriber:

        def door_count() -> int | None:
            messages = subscriber.on("vigil/door/present")
            return int(json.loads(messages[-1].payload)["count"]) if messages else None

        with BridgeThread(settings, namespace_of(settings)):
            publisher.publish(event(EventType.RECOGNIZED, "door-t1", ada))
            subscriber.wait_for(lambda: door_count() == 1, "Ada on the door")
        # when her track ended 10 s before the bridge is back (it, or its broker, was down)
        ended = event(EventType.TRACK_ENDED, "door-t1", ada).model_copy(
            update={"captured_at": iso_time(time.time() - 10)}
        )
        publisher.publish(ended)
        dropped_before = counter("vigil_bridge_events_total", dropped)
        with BridgeThread(settings, namespace_of(settings)):
            # then she leaves the door, the stale event is not published but counted as dropped
            subscriber.wait_for(lambda: door_count() == 0, "Ada gone from the door")
            deadline = time.monotonic() + WAIT_S
            while client.xpending(settings.streamer.events.stream, "vigil-bridge-mqtt")["pending"]:
                assert time.monotonic() < deadline, "the stale event was never acknowledged"
                time.sleep(0.02)
        assert len(subscriber.on("vigil/door/ada-lovelace")) == 1, "only the fresh event is published"
        assert counter("vigil_bridge_events_total", dropped) - dropped_before == 1, "counted as dropped"
        assert group_lag(client, settings.streamer.events.stream, "vigil-bridge-mqtt") == 0, "all acked"


def test_home_assistant_discovery_follows_enrolment_and_erasure(
    mosquitto: MosquittoBroker,
    bridge_settings: Settings,
    client: redis.Redis,
    gallery: Gallery,
    publisher: EventPublisher,
) -> None:
    # given discovery on, one person enrolled, a camera configured
    grace = gallery.create_identity("Grace Hopper")
    settings = mqtt_settings(bridge_settings, mosquitto, home_assistant={"enabled": True})
    ensure_group(settings, client)
    grace_config = f"homeassistant/binary_sensor/vigil_{grace.identity_id}/config"
    with (
        Subscriber(mosquitto, ("vigil/#", "homeassistant/#")) as subscriber,
        BridgeThread(settings, namespace_of(settings)),
    ):
        subscriber.wait_for(lambda: subscriber.on(grace_config), "Grace's discovery config")
        # then her config is what Home Assistant's MQTT discovery reads
        config = json.loads(subscriber.on(grace_config)[-1].payload)
        assert config["unique_id"] == f"vigil_{grace.identity_id}"
        assert config["state_topic"] == "vigil/person/grace-hopper"
        assert config["json_attributes_topic"] == config["state_topic"]
        assert config["availability_topic"] == "vigil/bridge/status"
        assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
        assert config["device_class"] == "presence"
        assert config["value_template"] == "{{ 'ON' if value_json.present else 'OFF' }}"
        assert config["device"]["identifiers"] and config["origin"]["name"] == "Vigil"
        assert "support_url" not in config["origin"], "Vigil has no public support page to point at"
        # when someone is enrolled later, their sensor appears
        alan = gallery.create_identity("Alan Turing")
        alan_config = f"homeassistant/binary_sensor/vigil_{alan.identity_id}/config"
        subscriber.wait_for(lambda: subscriber.on(alan_config), "Alan's discovery config (gallery poll)")
        # and a camera seen in an event gets an occupancy sensor
        publisher.publish(event(EventType.RECOGNIZED, "hall-t1", grace, camera="hall"))
        camera_config = "homeassistant/binary_sensor/vigil_camera_hall/config"
        subscriber.wait_for(lambda: subscriber.on(camera_config), "the hall camera's discovery config")
        assert json.loads(subscriber.on(camera_config)[-1].payload)["state_topic"] == "vigil/hall/present"
        subscriber.wait_for(
            lambda: any(json.loads(m.payload)["present"] for m in subscriber.on("vigil/person/grace-hopper")),
            "Grace present",
        )
        # when Grace is erased (the real erasure) while the bridge runs
        erase(settings, gallery, grace)
        # then her discovery config and state topic are cleared (empty retained payloads)
        subscriber.wait_for(
            lambda: subscriber.on(grace_config)[-1].payload == b"", "Grace's discovery config cleared"
        )
        subscriber.wait_for(
            lambda: subscriber.on("vigil/person/grace-hopper")[-1].payload == b"", "Grace's state cleared"
        )
        subscriber.wait_for(
            lambda: json.loads(subscriber.on("vigil/hall/present")[-1].payload)["people"] == [],
            "Grace gone from the hall's presence",
        )
    # and a fresh subscriber finds nothing about her, but Alan's sensor is still there (retained)
    state = retained(mosquitto, "vigil/#", "homeassistant/#")
    assert grace_config not in state and "vigil/person/grace-hopper" not in state
    assert not [topic for topic, payload in state.items() if "Grace" in json.dumps(payload)], (
        "no trace of Grace"
    )
    assert alan_config in state and "vigil/person/alan-turing" in state
    assert state_key_base(settings) + ":retained" and not client.hexists(
        state_key_base(settings) + ":retained", "vigil/person/grace-hopper"
    ), "the bridge forgot the cleared topic"


def test_erasure_while_the_bridge_is_down_is_cleared_at_start(
    mosquitto: MosquittoBroker,
    bridge_settings: Settings,
    client: redis.Redis,
    gallery: Gallery,
    publisher: EventPublisher,
) -> None:
    # given a person seen while the bridge ran, with discovery on
    linus = gallery.create_identity("Linus Pauling")
    settings = mqtt_settings(bridge_settings, mosquitto, home_assistant={"enabled": True})
    ensure_group(settings, client)
    person_topic = "vigil/person/linus-pauling"
    config_topic = f"homeassistant/binary_sensor/vigil_{linus.identity_id}/config"
    with Subscriber(mosquitto, ("vigil/#",)) as subscriber, BridgeThread(settings, namespace_of(settings)):
        publisher.publish(event(EventType.RECOGNIZED, "door-t9", linus))
        subscriber.wait_for(
            lambda: any(json.loads(m.payload)["present"] for m in subscriber.on(person_topic)),
            "Linus present",
        )
    assert {person_topic, config_topic} <= set(retained(mosquitto, "vigil/#", "homeassistant/#"))
    # when he is erased while the bridge is down
    erase(settings, gallery, linus)
    assert not client.exists(f"{state_key_base(settings)}:seen:{linus.identity_id}"), (
        "erasure took his sighting"
    )
    # and the bridge starts again
    with (
        Subscriber(mosquitto, ("vigil/bridge/status",)) as status,
        BridgeThread(settings, namespace_of(settings)),
    ):
        status.wait_for(
            lambda: [m.payload for m in status.on("vigil/bridge/status")][-1:] == [b"online"],
            "the bridge online",
        )
        # then his retained topics are gone from the broker
        deadline = time.monotonic() + WAIT_S
        while {person_topic, config_topic} & set(retained(mosquitto, "vigil/#", "homeassistant/#")):
            assert time.monotonic() < deadline, "Linus's retained topics were not cleared at start"
    state = retained(mosquitto, "vigil/#", "homeassistant/#")
    door = state["vigil/door/present"]
    assert isinstance(door, dict) and door["people"] == [], "nor is he on the door"


# -- delivery across a broker restart --------------------------------------------------------------


def test_broker_killed_and_restarted_loses_and_repeats_nothing(
    mosquitto: MosquittoBroker,
    bridge_settings: Settings,
    client: redis.Redis,
    gallery: Gallery,
    publisher: EventPublisher,
) -> None:
    # given a subscriber with a persistent session (the broker queues for it while it is away)
    ada = gallery.create_identity("Ada Lovelace")
    settings = mqtt_settings(bridge_settings, mosquitto)
    ensure_group(settings, client)
    published: list[str] = []

    def publish(first: int, count: int) -> None:
        for number in range(first, first + count):
            person = ada if number % 2 else None
            kind = EventType.RECOGNIZED if person else EventType.UNKNOWN
            item = event(kind, f"door-k{number}", person)
            publisher.publish(item)
            published.append(item.event_id)

    with (
        Subscriber(mosquitto, ("vigil/events",), session="vigil-test-listener") as subscriber,
        BridgeThread(settings, namespace_of(settings)) as bridge,
    ):

        def received() -> list[str]:
            return [json.loads(message.payload)["event_id"] for message in subscriber.on("vigil/events")]

        publish(0, 5)
        subscriber.wait_for(lambda: len(received()) == 5, "the first five events")
        wait_for_save(mosquitto)  # the subscriber's session and acknowledgements, so a kill keeps them
        # when the broker is killed, events come while it is down, and it comes back
        mosquitto.stop(kill=True)
        publish(5, 5)
        time.sleep(1.0)
        assert bridge.error is None, f"the bridge gave up: {bridge.error}"
        mosquitto.start()
        publish(10, 5)
        # then every event arrives, once
        deadline = time.monotonic() + 20.0
        while not set(received()) >= set(published) and time.monotonic() < deadline:
            time.sleep(0.05)
        missing = sorted(published.index(event_id) for event_id in set(published) - set(received()))
        assert not missing, (
            f"events lost across the broker restart (by number): {missing}\n{mosquitto.log()[-12000:]}"
        )
        time.sleep(0.5)  # room for a repeat to show up
        repeats = {event_id: times for event_id, times in Counter(received()).items() if times > 1}
        assert not repeats, f"events delivered more than once: {repeats}"
    assert client.xpending(settings.streamer.events.stream, "vigil-bridge-mqtt")["pending"] == 0, "all acked"


def test_events_of_a_bridge_stopped_while_the_broker_is_down_go_out_after_its_restart(
    mosquitto: MosquittoBroker,
    bridge_settings: Settings,
    client: redis.Redis,
    publisher: EventPublisher,
) -> None:
    # given a bridge that delivered one event, then lost its broker
    settings = mqtt_settings(bridge_settings, mosquitto)
    ensure_group(settings, client)
    first = event(EventType.UNKNOWN, "door-s0", None)
    later = [event(EventType.UNKNOWN, f"door-s{number}", None) for number in range(1, 4)]
    with Subscriber(mosquitto, ("vigil/events",), session="vigil-test-listener") as subscriber:
        with BridgeThread(settings, namespace_of(settings)):
            publisher.publish(first)
            subscriber.wait_for(lambda: len(subscriber.on("vigil/events")) == 1, "the first event")
            wait_for_save(mosquitto)
            mosquitto.stop(kill=True)
            # when events come while the broker is down, and the bridge is stopped before it returns
            for item in later:
                publisher.publish(item)
            time.sleep(1.0)
        lag = group_lag(client, settings.streamer.events.stream, "vigil-bridge-mqtt")
        assert lag == len(later), "events the broker never acknowledged stay unacknowledged on the stream"
        # then a bridge started after the broker is back delivers them, once each
        mosquitto.start()
        with BridgeThread(settings, namespace_of(settings)):
            subscriber.wait_for(lambda: len(subscriber.on("vigil/events")) >= 4, "the three later events")
            time.sleep(0.5)
        ids = [json.loads(message.payload)["event_id"] for message in subscriber.on("vigil/events")]
        assert ids == [item.event_id for item in [first, *later]], "each event once, in order"


def wait_for_save(broker: MosquittoBroker) -> None:
    """Wait until the broker has saved its state (every second) after everything it did so far."""
    time.sleep(0.2)  # the subscriber's PUBACKs are on their way
    done = len(broker.log())
    deadline = time.monotonic() + WAIT_S
    while "Saving in-memory database" not in broker.log()[done:]:
        assert time.monotonic() < deadline, "the broker never saved its state"
        time.sleep(0.05)


def test_a_redis_outage_is_waited_out_and_counted(
    mosquitto: MosquittoBroker, bridge_settings: Settings
) -> None:
    # given a bridge whose Redis refuses connections (nothing listens on its port)
    from tests.streamer.bridges.conftest import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    settings = mqtt_settings(bridge_settings, mosquitto)
    settings = settings.model_copy(update={"redis": settings.redis.model_validate({"url": url})})
    labels = {"component": "bridge", "error": "connection"}
    before = counter("vigil_redis_errors_total", labels)
    # when it runs, then it keeps running and counts each failed attempt
    with BridgeThread(settings, namespace_of(settings)) as bridge:
        deadline = time.monotonic() + WAIT_S
        while counter("vigil_redis_errors_total", labels) - before < 2:
            assert time.monotonic() < deadline, "Redis errors are not counted"
            assert bridge.error is None, f"the bridge stopped: {bridge.error!r}"
            time.sleep(0.05)


# -- bad configuration -----------------------------------------------------------------------------


def test_unknown_broker_host_is_a_one_line_error(bridge_settings: Settings) -> None:
    # given a broker host that does not resolve
    settings = bridge_settings.model_copy(
        update={
            "bridges": bridge_settings.bridges.model_copy(
                update={
                    "mqtt": bridge_settings.bridges.mqtt.model_validate(
                        {"url": "mqtt://no-such-broker.invalid"}
                    )
                }
            )
        }
    )
    # when the bridge starts, then it refuses in one line naming the host
    with pytest.raises(VigilError) as refusal:
        run_mqtt_bridge(settings, threading.Event())
    message = str(refusal.value)
    assert "no-such-broker.invalid" in message and "\n" not in message, message


@pytest.mark.parametrize(
    ("url_user", "password", "expected"),
    [
        ("vigil", "n0t-the-Pa55", "refused user 'vigil'"),  # a wrong password
        (None, None, "refused an anonymous client"),  # no user, on a broker that wants one
    ],
)
def test_refused_credentials_are_a_one_line_error_that_hides_the_password(
    mosquitto_factory: Callable[..., MosquittoBroker],
    bridge_settings: Settings,
    url_user: str | None,
    password: str | None,
    expected: str,
) -> None:
    # given a broker with one account, and the bridge with other credentials
    broker = mosquitto_factory(users={"vigil": "s3cret-right"})
    url = f"mqtt://{url_user}:{password}@{broker.host}:{broker.port}" if url_user else broker.url
    settings = mqtt_settings(bridge_settings, broker, url=url)
    # when it starts, then it stops with one line that says why, without the password
    bridge = BridgeThread(settings, namespace_of(settings))
    bridge._thread.start()
    error = bridge.join()
    assert error is not None and expected in str(error), f"expected {expected!r}, got {error!r}"
    assert "\n" not in str(error) and "n0t-the-Pa55" not in str(error), str(error)


def test_right_credentials_connect(
    mosquitto_factory: Callable[..., MosquittoBroker], bridge_settings: Settings, client: redis.Redis
) -> None:
    # given a broker with one account and the bridge with its password in the settings
    broker = mosquitto_factory(users={"vigil": "s3cret-right"})
    settings = mqtt_settings(bridge_settings, broker, username="vigil", password="s3cret-right")
    ensure_group(settings, client)
    # when it runs, then it is online
    with BridgeThread(settings, namespace_of(settings)):
        deadline = time.monotonic() + WAIT_S
        while _status(broker) != "online":
            assert time.monotonic() < deadline, f"the bridge never said online; broker log:\n{broker.log()}"


def test_credentials_refused_after_a_connection_are_waited_out(
    mosquitto_factory: Callable[..., MosquittoBroker],
    bridge_settings: Settings,
    client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given a bridge connected to a broker with one account
    broker = mosquitto_factory(users={"vigil": "s3cret-right"})
    settings = mqtt_settings(bridge_settings, broker, username="vigil", password="s3cret-right")
    ensure_group(settings, client)
    with BridgeThread(settings, namespace_of(settings)) as bridge:
        _wait_for_status(broker, "online")
        # when the broker restarts with the account's password changed, for a while
        broker.stop()
        broker.users = {"vigil": "changed-Pa55"}
        broker.start()
        deadline = time.monotonic() + WAIT_S
        while broker.log().count("not authorised") < 2:
            assert time.monotonic() < deadline, f"the bridge did not try again; broker log:\n{broker.log()}"
            assert bridge.error is None, f"the bridge stopped: {bridge.error!r}"
            time.sleep(0.05)
        # then the bridge keeps running, logs one error, and connects once the account is back
        assert bridge.error is None, f"the bridge stopped: {bridge.error!r}"
        refusals = [record for record in caplog.records if "refused user 'vigil'" in record.getMessage()]
        assert [record.levelname for record in refusals if record.levelname == "ERROR"] == ["ERROR"], (
            "one error per outage"
        )
        broker.stop()
        broker.users = {"vigil": "s3cret-right"}
        broker.start()
        _wait_for_status(broker, "online")


def _wait_for_status(broker: MosquittoBroker, expected: str) -> None:
    deadline = time.monotonic() + 2 * WAIT_S
    while _status(broker) != expected:
        assert time.monotonic() < deadline, f"the bridge never said {expected}; broker log:\n{broker.log()}"


def _status(broker: MosquittoBroker) -> str | None:
    probe = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    probe.username_pw_set("vigil", "s3cret-right")
    got: list[bytes] = []
    probe.on_message = lambda _c, _u, message: got.append(bytes(message.payload))
    probe.connect(broker.host, broker.port)
    probe.subscribe("vigil/bridge/status", 1)
    deadline = time.monotonic() + RETAINED_WAIT_S
    while not got and time.monotonic() < deadline:
        probe.loop(0.05)
    probe.disconnect()
    return got[-1].decode() if got else None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://host:notaport", "malformed"),  # a port that is not a number
        ("http://broker:1883", "must start with mqtt:// or mqtts://"),  # another scheme
        ("mqtt://broker:1883/topic", "host[:port] only"),  # a path
    ],
)
def test_malformed_broker_url_is_a_one_line_error(url: str, expected: str) -> None:
    # given a malformed URL in the environment, when the settings load, then one line says what is wrong
    from vigil.config import load_settings

    with pytest.raises(VigilError) as refusal:
        load_settings(environ={"VIGIL_BRIDGES__MQTT__URL": url})
    assert expected in str(refusal.value) and "\n" not in str(refusal.value), str(refusal.value)
