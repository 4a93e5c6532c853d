"""Home Assistant MQTT discovery: a presence sensor per enrolled person and per camera.

Home Assistant creates an entity for each retained JSON config it finds under
``<discovery_prefix>/<component>/<object_id>/config`` and removes it when that topic's retained
payload is cleared (an empty retained message). Each config here is one ``binary_sensor``:

- per person: ``<prefix>/binary_sensor/vigil_<identity id>/config``, ``device_class: presence``,
  on while the person is on any camera (``{topic_prefix}/person/<slug>``'s ``present``);
- per camera: ``<prefix>/binary_sensor/vigil_camera_<camera>/config``, ``device_class:
  occupancy``, on while anyone (a known person or an unknown face) is on it
  (``{topic_prefix}/<camera>/present``'s ``present``).

The object id is the ``unique_id``, as Home Assistant's discovery documentation recommends, and
uses its characters only (``[A-Za-z0-9_-]``); identity ids are uuid4 hex, so a rename keeps the
entity. The state topic's JSON is the sensor's attributes too (``json_attributes_topic``), the
bridge's status topic its availability (``online``/``offline``, the bridge's last will), and
every sensor belongs to one device, the bridge (identified by its MQTT client id).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from streamer.bridges.mqtt_topics import OFFLINE, ONLINE, object_id

COMPONENT = "binary_sensor"
# The state topics' JSON says "present": true/false; Home Assistant wants ON/OFF (its defaults).
PRESENT_TEMPLATE = "{{ 'ON' if value_json.present else 'OFF' }}"
PAYLOAD_ON = "ON"
PAYLOAD_OFF = "OFF"
ORIGIN_NAME = "Vigil"


@dataclass(frozen=True)
class DiscoveryContext:
    """What every discovery config shares.

    Attributes:
        discovery_prefix: Home Assistant's ``mqtt.discovery_prefix`` (``homeassistant``).
        status_topic: The bridge's availability topic.
        client_id: The bridge's MQTT client id: the device's identifier.
        sw_version: Vigil's version.
        qos: QoS Home Assistant subscribes with.
    """

    discovery_prefix: str
    status_topic: str
    client_id: str
    sw_version: str
    qos: int = 1


@dataclass(frozen=True)
class DiscoveryConfig:
    """One retained discovery message: its topic and JSON payload."""

    unique_id: str
    topic: str
    payload: str


def person_sensor(
    context: DiscoveryContext, identity_id: str, name: str, state_topic: str
) -> DiscoveryConfig:
    """The presence sensor of an enrolled person (on while they are on any camera)."""
    unique_id = f"vigil_{object_id(identity_id)}"
    return _sensor(context, unique_id, name, "presence", state_topic, "mdi:account")


def camera_sensor(context: DiscoveryContext, camera: str, state_topic: str) -> DiscoveryConfig:
    """The occupancy sensor of a camera (on while anyone, known or not, is on it)."""
    unique_id = f"vigil_camera_{object_id(camera)}"
    return _sensor(context, unique_id, f"{camera} occupancy", "occupancy", state_topic, "mdi:cctv")


def _sensor(
    context: DiscoveryContext, unique_id: str, name: str, device_class: str, state_topic: str, icon: str
) -> DiscoveryConfig:
    payload = {
        "name": name,
        "unique_id": unique_id,
        "device_class": device_class,
        "icon": icon,
        "state_topic": state_topic,
        "value_template": PRESENT_TEMPLATE,
        "payload_on": PAYLOAD_ON,
        "payload_off": PAYLOAD_OFF,
        "json_attributes_topic": state_topic,
        "availability_topic": context.status_topic,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "qos": context.qos,
        "device": {
            "identifiers": [f"vigil_{object_id(context.client_id)}"],
            "name": "Vigil",
            "manufacturer": "Vigil",
            "model": "Face recognition MQTT bridge",
            "sw_version": context.sw_version,
        },
        "origin": {"name": ORIGIN_NAME, "sw_version": context.sw_version},
    }
    topic = f"{context.discovery_prefix}/{COMPONENT}/{unique_id}/config"
    return DiscoveryConfig(unique_id, topic, json.dumps(payload, sort_keys=True))
