"""Age and gender in events: once per track, from its faces' real embeddings, with the shipped head."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.analysis import FaceResult
from streamer.events import EventType
from streamer.track_attributes import TrackAttributes
from streamer.tracking import CameraTracker
from tests.conftest import PEOPLE, SHARED_DATA, require
from tests.streamer.test_tracking import feed, make_frame
from vigil.config.streamer import TrackerConfig
from vigil.image import load_image
from vigil.models.pipeline import FacePipeline

FACENET_PEOPLE = SHARED_DATA / "people" / "facenet_pytorch" / "test_images"


def face_of(pipeline: FacePipeline, photo: Path) -> FaceResult:
    """The photo's central face as a worker reports it: unknown, with its real embedding."""
    face = pipeline.central_face(load_image(require(photo)))
    assert face is not None, f"no face in {photo}"
    x1, y1, x2, y2 = (float(v) for v in face.box_xyxy)
    return FaceResult(
        box=[x1, y1, x2, y2],
        landmarks=face.landmarks.tolist(),
        detection_score=face.score,
        embedding=face.embedding,
        identity_id=None,
        name=None,
        score=0.5,
        candidate_id=None,
    )


@pytest.mark.parametrize(
    ("photo", "gender"),
    [(PEOPLE / "obama.jpg", "male"), (FACENET_PEOPLE / "angelina_jolie" / "1.jpg", "female")],
    ids=["obama", "jolie"],
)
def test_an_unknown_tracks_events_carry_age_and_gender(
    pipeline: FacePipeline, tmp_path: Path, photo: Path, gender: str
) -> None:
    # given a stranger's real face seen on 10 frames, and the tracker estimating attributes
    face = face_of(pipeline, photo)
    version = pipeline.embedder.version
    tracker = CameraTracker(
        "door", TrackerConfig(unknown_after_frames=8), "run1", attributes=TrackAttributes(tmp_path)
    )
    # when tracked to its end
    events = feed(tracker, [make_frame(n, [face], embedder_version=version) for n in range(10)])
    events += tracker.end_all()
    # then the unknown event and the track's end carry the same adult age and the right gender
    unknown, ended = events
    assert (unknown.type, ended.type) == (EventType.UNKNOWN, EventType.TRACK_ENDED)
    attributes = unknown.attributes
    assert attributes is not None and ended.attributes == attributes
    assert attributes.gender == gender and attributes.gender_confidence >= 0.7, attributes
    low, high = attributes.age_range
    assert 18 <= attributes.age <= 75 and low <= attributes.age <= high, attributes


def test_without_an_estimator_events_carry_no_attributes(pipeline: FacePipeline) -> None:
    face = face_of(pipeline, PEOPLE / "obama.jpg")
    tracker = CameraTracker("door", TrackerConfig(unknown_after_frames=8), "run1")
    events = feed(tracker, [make_frame(n, [face]) for n in range(9)])
    assert [event.attributes for event in events] == [None]
