"""What TrackLearning keeps from a track's outcomes, on synthetic tracks and a real Redis."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from streamer.events import EventType
from streamer.learning import TrackLearning
from tests.conftest import RedisBackend
from tests.streamer.test_tracking import People, Person, feed, make_frame, make_tracker, walk
from vigil.config.indexer import IndexerConfig
from vigil.config.streamer import TrackerConfig
from vigil.config.unknowns import UnknownsConfig

# A small JPEG: the opted-in crop a worker attaches to unmatched faces.
CROP = bytes(cv2.imencode(".jpg", np.full((8, 8, 3), 200, np.uint8))[1])


@pytest.mark.redis
def test_a_track_named_after_its_unknown_event_leaves_nothing_kept_as_a_stranger(
    backend: RedisBackend,
) -> None:
    # given aging off, unknowns kept with images, and a tracker that announces `unknown` after 3
    # unmatched frames
    gallery = backend.gallery()
    learning = TrackLearning(
        gallery, IndexerConfig(unknowns=UnknownsConfig(keep=True, keep_images=True)), TrackerConfig()
    )
    tracker = make_tracker(unknown_after_frames=3, min_votes=3, max_gap_s=1.0)
    people = People()
    ada = people.person("id-ada", "Ada")
    unmatched = Person(None, None, ada.embedding)  # Ada, before her face matched well enough
    frames = [
        replace(frame, faces=[replace(face, crop_jpeg=CROP) for face in frame.faces])
        for frame in walk(people, unmatched, range(4))
    ]
    # when her track is first announced unknown, then named on later frames, then ends
    events = feed(tracker, [*frames, *walk(people, ada, range(4, 10)), make_frame(20, [])])
    kinds = [event.type for event in events]
    assert kinds == [EventType.UNKNOWN, EventType.RECOGNIZED, EventType.TRACK_ENDED], kinds
    seen_unknown = False
    for event in events:
        outcome = tracker.take_outcome(event.event_id)
        if outcome is not None:
            learning.learn(outcome)
        if event.type is EventType.UNKNOWN:
            # then the unknown visit was kept, image and all, while she was a stranger
            sighting = learning.unknowns.entry(event.event_id)
            assert sighting is not None and sighting.embeddings.shape[0] >= 1
            seen_unknown = True
    # and once the track ended named, nothing of her face is left among the strangers
    assert seen_unknown and learning.unknowns.entries() == []
    assert not any(CROP in (gallery.client.dump(key) or b"") for key in gallery.client.scan_iter("*"))
