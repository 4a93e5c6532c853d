"""Bridges in the service: `vigil run` supervises them, `vigil status` shows their lag.

Real processes throughout: `vigil run` over the shared clip with the MQTT bridge enabled against a
real Mosquitto broker, a real MQTT subscriber, and the embedded Redis of the test's home.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import paho.mqtt.client as mqtt
import psutil
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion

from streamer.bridges.source import BridgeSource
from streamer.events import EventPublisher, iso_time
from streamer.status import service_status
from tests.conftest import require
from tests.streamer.bridges.conftest import MosquittoBroker, MosquittoFactory
from tests.streamer.conftest import CLIP
from tests.streamer.test_events import make_event
from tests.test_cli import assert_one_line_error, run_vigil
from vigil.config import Settings
from vigil.config.redis import RedisConfig
from vigil.streams import StreamEntry, connect_redis

pytestmark = pytest.mark.redis

SUBSCRIBE_WAIT_S = 5.0
RUN_TIMEOUT_S = 300.0
BRIDGE_START_S = 60.0
WRONG_PASSWORD = "not-the-pw-Zq81"
# The bridges' filter for every event type (the default leaves track_ended out).
EVERY_EVENT = "  filter: {types: [recognized, unknown, track_ended]}\n"


class Subscriber:
    """A real MQTT client collecting what is published on one topic (QoS 1)."""

    def __init__(self, broker: MosquittoBroker, topic: str) -> None:
        self.messages: list[bytes] = []
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-subscriber")
        self._client.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = lambda _client, _data, message: self.messages.append(bytes(message.payload))
        # connect_async, then loop_start: connect() first makes a socket pair that loop_start()
        # replaces without closing it (paho-mqtt 2.1), a ResourceWarning.
        self._client.connect_async(broker.host, broker.port)
        self._client.loop_start()
        assert self._subscribed.wait(SUBSCRIBE_WAIT_S), "the test subscriber could not subscribe"

    def close(self) -> None:
        self._client.disconnect()  # before loop_stop: the network thread then closes the socket
        self._client.loop_stop()
        # paho closes its wake-up socket pair only when the client is deleted; the callbacks refer
        # back to this object, a cycle the garbage collector would break in an order that leaves the
        # sockets unclosed (a ResourceWarning).
        self._client.on_connect = self._client.on_subscribe = self._client.on_message = None


@pytest.fixture
def events_subscriber(mosquitto: MosquittoBroker) -> Iterator[Subscriber]:
    subscriber = Subscriber(mosquitto, "vigil/events")
    yield subscriber
    subscriber.close()


def write_config(tmp_path: Path, mqtt_section: str) -> Path:
    config = tmp_path / "vigil.yaml"
    config.write_text(f"bridges:\n  mqtt:\n{mqtt_section}")
    return config


def stored_event_ids(home: Path) -> list[str]:
    client = connect_redis(RedisConfig(), home)
    try:
        entries = cast(list[StreamEntry], client.xrange("vigil:events"))
        return [json.loads(fields[b"event"])["event_id"] for _, fields in entries]
    finally:
        client.close()


@pytest.mark.slow
def test_vigil_run_relays_every_event_of_the_run_through_its_bridge(
    tmp_path: Path, mosquitto: MosquittoBroker, events_subscriber: Subscriber
) -> None:
    # given the MQTT bridge enabled, every event type passed on, and a subscriber on vigil/events
    config = write_config(
        tmp_path,
        f"    enabled: true\n    url: {mosquitto.url}\n{EVERY_EVENT}",
    )
    # when the service runs over the clip (no one enrolled: every face is unknown) and ends by itself
    result = run_vigil(
        "--config",
        str(config),
        "run",
        str(require(CLIP)),
        "--as-fast-as-possible",
        "--quiet",
        "--metrics-port",
        "0",
        home=tmp_path,
        timeout_s=RUN_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    # then the bridge process published every event of the run, each once, before it was stopped
    published = stored_event_ids(tmp_path)
    assert published, "the run should have published events"
    relayed = [json.loads(payload)["event_id"] for payload in events_subscriber.messages]
    assert sorted(relayed) == sorted(published), "each event on the broker exactly once"
    # and `vigil status` says the bridge is not behind
    status = run_vigil("--config", str(config), "status", "--json", home=tmp_path)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["bridges"] == {"mqtt": {"lag": 0}}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("broker_users", "url_of", "fragment"),
    [
        # the broker refuses the bridge's password
        (
            {"vigil": "right"},
            lambda broker: f"mqtt://vigil:{WRONG_PASSWORD}@127.0.0.1:{broker.port}",
            "mqtt bridge",
        ),
        # the broker's host name does not resolve
        (None, lambda _broker: "mqtt://broker.invalid:1883", "broker.invalid"),
    ],
    ids=["wrong-password", "unknown-host"],
)
def test_a_bridge_refused_for_good_stops_the_service_in_one_line(
    tmp_path: Path,
    mosquitto_factory: MosquittoFactory,
    broker_users: dict[str, str] | None,
    url_of: Callable[[MosquittoBroker], str],
    fragment: str,
) -> None:
    # given the MQTT bridge enabled with a setting no restart can fix
    broker = mosquitto_factory(users=broker_users)
    url = url_of(broker)
    config = write_config(tmp_path, f"    enabled: true\n    url: '{url}'\n")
    # when the service starts
    started = time.monotonic()
    result = run_vigil(
        "--config",
        str(config),
        "run",
        str(require(CLIP)),
        "--metrics-port",
        "0",
        home=tmp_path,
        timeout_s=120,
    )
    # then it stops by itself with one line, without restarting the bridge, and never shows the password
    assert_one_line_error(result, fragment)
    assert "restarting it in" not in result.stderr, result.stderr[-3000:]
    assert WRONG_PASSWORD not in result.stderr, "the password must not be printed"
    assert time.monotonic() - started < 120


def test_status_shows_each_bridge_lag(bridge_settings: Settings) -> None:
    client = redis.Redis.from_url(str(bridge_settings.redis.url))
    try:
        enabled = bridge_settings.model_copy(deep=True)
        enabled.bridges.mqtt.enabled = True
        # given the MQTT bridge enabled but never run: shown, 0 behind; webhooks not configured: not shown
        assert service_status(enabled, client).bridges == {"mqtt": 0}
        assert service_status(bridge_settings, client).bridges == {}
        # when its group exists (vigil run made it) and three events are published, one delivered
        source = BridgeSource(client, enabled, "mqtt", None)
        source.ensure_group()
        publisher = EventPublisher(client, enabled.streamer.events)
        for frame in range(3):
            publisher.publish(make_event(frame=frame, captured_at=iso_time(time.time())))
        source.ack([item.stream_id for item in source.read(threading.Event(), count=1)])
        # then status shows it two behind, also where the settings do not enable it (another machine)
        assert service_status(enabled, client).bridges == {"mqtt": 2}
        assert service_status(bridge_settings, client).to_dict()["bridges"] == {"mqtt": {"lag": 2}}
    finally:
        client.close()


def bridge_processes(service: psutil.Process, broker: MosquittoBroker) -> list[psutil.Process]:
    """The service's children connected to the broker: its MQTT bridge."""
    found = []
    for child in service.children(recursive=True):
        try:
            if any(c.raddr and c.raddr.port == broker.port for c in child.net_connections(kind="tcp")):
                found.append(child)
        except psutil.Error:  # gone meanwhile
            continue
    return found


def wait_for_bridge(
    service: psutil.Process, broker: MosquittoBroker, other_than: int | None
) -> psutil.Process:
    deadline = time.monotonic() + BRIDGE_START_S
    while time.monotonic() < deadline:
        found = [p for p in bridge_processes(service, broker) if p.pid != other_than]
        if found:
            return found[0]
        time.sleep(0.1)
    pytest.fail(
        f"no bridge process connected to the broker within {BRIDGE_START_S} s:\n{broker.log()[-2000:]}"
    )


@pytest.mark.slow
def test_a_killed_bridge_is_restarted_and_loses_no_event(
    tmp_path: Path, mosquitto: MosquittoBroker, events_subscriber: Subscriber
) -> None:
    # given `vigil run` over the clip in real time, with the MQTT bridge enabled for every event
    config = write_config(
        tmp_path,
        f"    enabled: true\n    url: {mosquitto.url}\n{EVERY_EVENT}",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")} | {"VIGIL_HOME": str(tmp_path)}
    command = [sys.executable, "-m", "vigil", "--config", str(config), "run", str(require(CLIP))]
    with subprocess.Popen(
        [*command, "--quiet", "--metrics-port", "0"], env=env, stderr=subprocess.PIPE, text=True
    ) as service:
        try:
            # when its bridge process is killed once it has relayed an event (others may be pending)
            first = wait_for_bridge(psutil.Process(service.pid), mosquitto, other_than=None)
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while not events_subscriber.messages:
                assert service.poll() is None, "the run ended before any event reached the broker"
                assert time.monotonic() < deadline, "no event reached the broker"
                time.sleep(0.02)
            first.kill()
            # then the supervisor starts another, which connects again
            second = wait_for_bridge(psutil.Process(service.pid), mosquitto, other_than=first.pid)
            assert second.pid != first.pid
            _, stderr = service.communicate(timeout=RUN_TIMEOUT_S)
        finally:
            service.kill()
    assert service.returncode == 0, stderr[-3000:]
    assert "bridge-mqtt exited with status" in stderr and "restarting it in" in stderr, stderr[-3000:]
    # and every event of the run reached the broker (the restarted bridge resumed from its group)
    relayed = {json.loads(payload)["event_id"] for payload in events_subscriber.messages}
    assert set(stored_event_ids(tmp_path)) <= relayed
