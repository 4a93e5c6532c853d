"""Learning survives a tracker killed between publishing an event and learning from it.

The tracker commits a step's events in one script, then learns from their outcomes (kept
unknown faces, aging templates). A tracker that dies in between must not lose the learning:
the outcome is recorded in the same commit and learnt by the restarted tracker. Learning is
idempotent (an unknown entry is rewritten under its event id; a repeated aging template is a
near-duplicate), so learning it twice is harmless.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import redis

from indexer.enroll import enroll_person
from indexer.gallery import Gallery
from indexer.identify import Identifier
from streamer.events import EventType, read_events
from streamer.learning import TrackLearning
from streamer.tracker import TrackerService
from streamer.tracking import TrackOutcome
from tests.conftest import PEOPLE, require
from tests.streamer.test_learning import home, stream_settings, visit_results  # noqa: F401  (fixture)
from vigil.config import Settings
from vigil.models.pipeline import FacePipeline

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TRACKER_WAIT_S = 60.0


class _Killed(BaseException):
    """The tracker process dying (SIGKILL) right after its commit."""


class DyingLearning(TrackLearning):
    """Learning that kills the tracker when it is handed a ``track_ended`` outcome."""

    def learn(self, outcome: TrackOutcome) -> None:
        if outcome.event.type is EventType.TRACK_ENDED:
            raise _Killed
        super().learn(outcome)


def run_until_done(service: TrackerService) -> list[BaseException]:
    """Run ``service`` in a thread until its cameras end or it dies; what it died of."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            service.run(threading.Event())
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(TRACKER_WAIT_S)
    assert not thread.is_alive(), "the tracker hung"
    return errors


def test_learning_from_an_event_survives_a_tracker_killed_after_the_commit(
    home: tuple[Path, redis.Redis],  # noqa: F811
    settings: Settings,
    pipeline: FacePipeline,
) -> None:
    _, client = home
    config = stream_settings(
        settings, {"aging": {"enabled": True, "min_margin": 0.0, "min_face_px": 40, "min_track_frames": 3}}
    )
    gallery = Gallery(client)
    identifier = Identifier.from_settings(gallery, pipeline, config)
    obama = enroll_person(identifier, config.indexer, "Barack Obama", [require(PEOPLE / "obama.jpg")])
    obama_id = obama.identity.identity_id
    results = visit_results(identifier, [require(PEOPLE / "obama2.jpg")])
    # given a tracker that is killed once it has published Obama's track_ended, before it learns
    service = TrackerService(client, config, "run1", {"door"}, gallery)
    service.learning = DyingLearning(gallery, config.indexer, config.streamer.tracker)
    service.ensure_group()
    for result in results:
        client.xadd(config.streamer.bus.faces_stream, result.to_fields())  # type: ignore[arg-type]
    errors = run_until_done(service)
    assert len(errors) == 1 and isinstance(errors[0], _Killed), errors
    ended = [e for _, e in read_events(client, config.streamer.events) if e.type is EventType.TRACK_ENDED]
    assert len(ended) == 1, "the track_ended event was committed before the kill"
    assert [t for t in gallery.identity_templates(obama_id) if t.origin == "aging"] == []

    # when the tracker is restarted (same run)
    assert run_until_done(TrackerService(client, config, "run1", {"door"}, gallery)) == []

    # then it learnt from the event the first one published: one aging template, from that event
    aging = [t for t in gallery.identity_templates(obama_id) if t.origin == "aging"]
    assert [t.event_id for t in aging] == [ended[0].event_id], aging
    # and no event was published twice
    events = [e for _, e in read_events(client, config.streamer.events)]
    assert sorted(e.type.value for e in events) == ["recognized", "track_ended"], events
    # and nothing is left pending
    assert client.hlen(f"{config.streamer.bus.faces_stream}:tracker:learning") == 0
