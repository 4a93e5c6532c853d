"""`vigil run` with the MQTT bridge: hamilton.mp4 through the real service, Obama enrolled, a real broker.

Real processes throughout (the CLI's enrolment, `vigil run` with its bridge child process, the
embedded Redis of the test's home, Mosquitto) and a real paho subscriber.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from streamer.events import Event, EventType, read_events
from tests.conftest import PEOPLE, require
from tests.streamer.bridges.conftest import MosquittoBroker
from tests.streamer.conftest import CLIP
from tests.test_cli import run_vigil
from vigil.config.redis import RedisConfig
from vigil.config.streamer import EventsConfig
from vigil.streams import connect_redis

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SUBSCRIBE_WAIT_S = 5.0
# The clip (9 s) runs in real time, so a loaded machine drops no frame (Obama is only in its last
# 2 s); start-up (models, embedded Redis, the bridge process) takes most of the rest.
RUN_TIMEOUT_S = 300.0


class Collector:
    """A real MQTT client subscribed to ``vigil/#`` and ``homeassistant/#``: topic -> payloads."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.messages: dict[str, list[bytes]] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        self._client.on_connect = lambda client, *_: client.subscribe(
            [("vigil/#", 1), ("homeassistant/#", 1)]
        )
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._record
        self._client.connect_async(broker.host, broker.port)  # connect() + loop_start() leaks a socket pair
        self._client.loop_start()
        assert self._subscribed.wait(SUBSCRIBE_WAIT_S), "the test subscriber could not subscribe"

    def _record(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.setdefault(message.topic, []).append(bytes(message.payload))

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def collector(mosquitto: MosquittoBroker) -> Iterator[Collector]:
    subscriber = Collector(mosquitto)
    yield subscriber
    subscriber.close()


def test_hamilton_through_the_service_names_obama_on_his_topics(
    tmp_path: Path, mosquitto: MosquittoBroker, collector: Collector
) -> None:
    # given Obama enrolled, the MQTT bridge with Home Assistant discovery on, and a subscriber
    enrolled = run_vigil("enroll", "Barack Obama", str(require(PEOPLE / "obama.jpg")), home=tmp_path)
    assert enrolled.returncode == 0, enrolled.stderr
    config = tmp_path / "vigil.yaml"
    config.write_text(
        "bridges:\n"
        "  mqtt:\n"
        "    enabled: true\n"
        f"    url: {mosquitto.url}\n"
        "    home_assistant: {enabled: true}\n"
    )
    # when the service runs over the clip and ends by itself
    result = run_vigil(
        "--config", str(config), "run", str(require(CLIP)), "--quiet",
        "--metrics-port", "0", home=tmp_path, timeout_s=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    # then Obama's recognized event is on vigil/<camera>/barack-obama, once, and on vigil/events
    by_person = {
        topic: payloads
        for topic, payloads in collector.messages.items()
        if topic.endswith("/barack-obama") and not topic.startswith("vigil/person/")
    }
    assert len(by_person) == 1, f"one camera/person topic for Obama, got {sorted(collector.messages)}"
    topic, payloads = next(iter(by_person.items()))
    events = [json.loads(payload) for payload in payloads]
    assert [(event["type"], event["name"]) for event in events] == [("recognized", "Barack Obama")]
    assert topic == f"vigil/{events[0]['camera']}/barack-obama"
    all_ids = [json.loads(payload)["event_id"] for payload in collector.messages["vigil/events"]]
    assert events[0]["event_id"] in all_ids and len(all_ids) == len(set(all_ids)), "each event once"
    # and his retained state says where and when he was last seen, and that he left
    person = json.loads(collector.messages["vigil/person/barack-obama"][-1])
    assert person["last_camera"] == events[0]["camera"] and person["last_seen"], person
    assert person["present"] is False, "every track ended with the clip"
    assert json.loads(collector.messages[f"vigil/{events[0]['camera']}/present"][-1])["count"] == 0
    # and every recognized or unknown event of the run reached its camera/person topic, once
    assert_every_event_on_its_topic(tmp_path, collector)
    # and Home Assistant has a presence sensor for him, and one for the camera
    discovery = [topic for topic in collector.messages if topic.startswith("homeassistant/binary_sensor/")]
    obama_config = [json.loads(collector.messages[topic][-1]) for topic in discovery if "camera" not in topic]
    assert [config["state_topic"] for config in obama_config] == ["vigil/person/barack-obama"]
    assert f"homeassistant/binary_sensor/vigil_camera_{events[0]['camera']}/config" in discovery
    # and the bridge said offline when the service stopped it
    assert collector.messages["vigil/bridge/status"][-1] == b"offline"


def stored_events(home: Path) -> list[Event]:
    """The run's events, from the events stream in the embedded Redis of ``home`` (started again)."""
    client = connect_redis(RedisConfig(), home)
    try:
        return [event for _, event in read_events(client, EventsConfig())]
    finally:
        client.close()


def assert_every_event_on_its_topic(home: Path, collector: Collector) -> None:
    """Each recognized/unknown event of the run is on ``vigil/<camera>/<slug | unknown>`` exactly once."""
    shown = [
        event for event in stored_events(home) if event.type in (EventType.RECOGNIZED, EventType.UNKNOWN)
    ]
    assert shown, "the run should have stored events"
    for event in shown:
        level = "unknown" if event.identity_id is None else "barack-obama"
        payloads = collector.messages.get(f"vigil/{event.camera}/{level}", [])
        ids = [json.loads(payload)["event_id"] for payload in payloads]
        assert ids.count(event.event_id) == 1, (
            f"{event.type} {event.event_id}: {ids.count(event.event_id)} times"
        )
