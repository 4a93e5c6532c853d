"""The filter both bridges share: which events pass ``bridges.filter`` (and per-bridge overrides)."""

from __future__ import annotations

from typing import Any

import pytest

from streamer.bridges.filters import event_passes
from streamer.events import Event, EventType
from tests.streamer.test_events import make_event
from vigil.config.bridges import BridgeFilter

RECOGNIZED_ADA = make_event()  # door, Ada Lovelace (id-ada), score 0.97
UNKNOWN = make_event(identity_id=None, name=None, kind=EventType.UNKNOWN)
ADA_LEFT = make_event(kind=EventType.TRACK_ENDED, duration_s=4.0)
STRANGER_LEFT = make_event(identity_id=None, name=None, kind=EventType.TRACK_ENDED, duration_s=2.0)
ADA_IN_GARDEN = make_event(camera="garden")
ADA_UNSURE = make_event(score=0.60)


@pytest.mark.parametrize(
    ("event", "rule", "passes"),
    [
        # the default: recognized and unknown pass, track ends do not
        (RECOGNIZED_ADA, {}, True),
        (UNKNOWN, {}, True),
        (ADA_LEFT, {}, False),
        # types: asking for track ends lets them through, and only them
        (ADA_LEFT, {"types": ["track_ended"]}, True),
        (RECOGNIZED_ADA, {"types": ["track_ended"]}, False),
        # cameras: only the listed cameras
        (RECOGNIZED_ADA, {"cameras": ["door"]}, True),
        (ADA_IN_GARDEN, {"cameras": ["door"]}, False),
        (ADA_IN_GARDEN, {"cameras": ["door", "garden"]}, True),
        # people: by display name or by identity id
        (RECOGNIZED_ADA, {"people": ["Ada Lovelace"]}, True),
        (RECOGNIZED_ADA, {"people": ["id-ada"]}, True),
        (RECOGNIZED_ADA, {"people": ["Grace Hopper"]}, False),
        # people: unknown faces name nobody, so they are left out once people is set
        (UNKNOWN, {"people": ["Ada Lovelace"]}, False),
        # unknown_only: unknown events pass, named events do not
        (UNKNOWN, {"unknown_only": True}, True),
        (RECOGNIZED_ADA, {"unknown_only": True}, False),
        # unknown_only with track ends: only the ends of unknown tracks
        (STRANGER_LEFT, {"unknown_only": True, "types": ["unknown", "track_ended"]}, True),
        (ADA_LEFT, {"unknown_only": True, "types": ["unknown", "track_ended"]}, False),
        # min_score: named events below it are dropped, at or above pass
        (ADA_UNSURE, {"min_score": 0.9}, False),
        (RECOGNIZED_ADA, {"min_score": 0.97}, True),
        # min_score: unknown faces have no score and pass
        (UNKNOWN, {"min_score": 0.9}, True),
        # min_score applies to the end of a named track too (its score is the track's)
        (
            make_event(kind=EventType.TRACK_ENDED, score=0.5),
            {"types": ["track_ended"], "min_score": 0.9},
            False,
        ),
        # every condition must hold: right camera and person, wrong type
        (ADA_LEFT, {"cameras": ["door"], "people": ["Ada Lovelace"]}, False),
    ],
)
def test_event_passes(event: Event, rule: dict[str, Any], passes: bool) -> None:
    # given a filter, when an event meets it, then it passes or not as the row says
    assert event_passes(event, BridgeFilter(**rule)) is passes, (
        f"{event.type} {event.camera} {event.name} {rule}"
    )


def test_a_bridge_or_endpoint_filter_overrides_the_common_one() -> None:
    # given a common filter for unknowns only, and one endpoint with its own filter for Ada
    from vigil.config.bridges import BridgesConfig

    bridges = BridgesConfig(
        filter=BridgeFilter(unknown_only=True),
        mqtt={"filter": {"people": ["Ada Lovelace"]}},
        webhooks={
            "endpoints": [
                {"name": "own", "url": "http://h/x", "filter": {"people": ["id-ada"]}},
                {"name": "common", "url": "http://h/y"},
            ]
        },
    )
    own, common = bridges.webhooks.endpoints
    # then the overrides decide for their bridge or endpoint, the common filter for the rest
    assert event_passes(RECOGNIZED_ADA, bridges.mqtt_filter)
    assert event_passes(RECOGNIZED_ADA, bridges.endpoint_filter(own))
    assert not event_passes(RECOGNIZED_ADA, bridges.endpoint_filter(common))
    assert event_passes(UNKNOWN, bridges.endpoint_filter(common))
