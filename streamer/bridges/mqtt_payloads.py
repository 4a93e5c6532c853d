"""What the MQTT bridge's retained topics hold: a pure function of its state and the gallery's people.

``{prefix}/<camera>/present`` (one per configured camera, and per camera seen in events)::

    {"camera": "door", "present": true, "count": 2, "unknown": 1,
     "people": [{"identity_id": "9f…", "name": "Barack Obama", "slug": "barack-obama",
                 "since": "2026-12-06T03:10:00.123+00:00"}]}

``count`` is every track on the camera (named or not), ``unknown`` the tracks of faces the gallery
does not know, ``people`` each person on it once (with their earliest ``since``).

``{prefix}/person/<slug>`` (one per enrolled person)::

    {"identity_id": "9f…", "name": "Barack Obama", "slug": "barack-obama", "present": false,
     "cameras": [], "last_camera": "door", "last_seen": "2026-12-06T03:10:04.456+00:00"}

``last_camera``/``last_seen`` are null until the person is first seen. Payloads carry no time of
their own, so an unchanged state is not published again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from indexer.records import Identity
from streamer.bridges.home_assistant import DiscoveryContext, camera_sensor, person_sensor
from streamer.bridges.mqtt_state import Presence, PresenceSnapshot
from streamer.bridges.mqtt_topics import ONLINE, Topics


@dataclass(frozen=True)
class RetainedTopic:
    """One retained topic as it should be.

    Attributes:
        topic: Where.
        payload: What (never empty: an empty retained payload clears a topic).
        owner: The identity id it is about, or "" (cameras, the status topic).
    """

    topic: str
    payload: str
    owner: str = ""


def desired_topics(
    topics: Topics,
    people: Mapping[str, Identity],
    slugs: Mapping[str, str],
    snapshot: PresenceSnapshot,
    configured_cameras: Iterable[str],
    discovery: DiscoveryContext | None,
) -> dict[str, RetainedTopic]:
    """Every retained topic the bridge should hold now, by topic.

    Args:
        topics: Topic names.
        people: The enrolled people by identity id.
        slugs: Their topic levels (``mqtt_topics.person_slugs``).
        snapshot: Presence and sightings (``StateStore.snapshot``); entries of people not in
            ``people`` (erased meanwhile) are left out.
        configured_cameras: Cameras of the configuration (they get a present topic before any event).
        discovery: Home Assistant discovery's settings, None when it is off.
    """
    wanted: dict[str, RetainedTopic] = {}

    def want(topic: str, payload: str, owner: str = "") -> None:
        wanted[topic] = RetainedTopic(topic, payload, owner)

    want(topics.status, ONLINE)
    present = [item for item in snapshot.present if item.identity_id is None or item.identity_id in people]
    for camera in sorted({*configured_cameras, *snapshot.cameras}):
        state_topic = topics.present(camera)
        on_camera = [item for item in present if item.camera == camera]
        want(state_topic, camera_payload(camera, on_camera, people, slugs))
        if discovery is not None:
            sensor = camera_sensor(discovery, camera, state_topic)
            want(sensor.topic, sensor.payload)
    for identity_id, person in people.items():
        state_topic = topics.person(slugs[identity_id])
        cameras = sorted({item.camera for item in present if item.identity_id == identity_id})
        sighting = snapshot.seen.get(identity_id)
        payload = {
            "identity_id": identity_id,
            "name": person.name,
            "slug": slugs[identity_id],
            "present": bool(cameras),
            "cameras": cameras,
            "last_camera": sighting.camera if sighting is not None else None,
            "last_seen": sighting.at if sighting is not None else None,
        }
        want(state_topic, json.dumps(payload, ensure_ascii=False), identity_id)
        if discovery is not None:
            sensor = person_sensor(discovery, identity_id, person.name, state_topic)
            want(sensor.topic, sensor.payload, identity_id)
    return wanted


def camera_payload(
    camera: str, on_camera: Iterable[Presence], people: Mapping[str, Identity], slugs: Mapping[str, str]
) -> str:
    """The JSON of ``{prefix}/<camera>/present`` (see the module docstring)."""
    tracks = list(on_camera)
    named: dict[str, dict[str, str]] = {}
    for item in sorted(tracks, key=lambda presence: presence.since):
        if item.identity_id is not None and item.identity_id not in named:
            named[item.identity_id] = {
                "identity_id": item.identity_id,
                "name": people[item.identity_id].name,
                "slug": slugs[item.identity_id],
                "since": item.since,
            }
    unknown = sum(1 for item in tracks if item.identity_id is None)
    payload = {
        "camera": camera,
        "present": bool(tracks),
        "count": len(tracks),
        "unknown": unknown,
        "people": list(named.values()),
    }
    return json.dumps(payload, ensure_ascii=False)
