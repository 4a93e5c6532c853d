"""Expression in events: only for cameras that opt in, once per track, from its best face crops."""

from __future__ import annotations

import base64
import dataclasses
from typing import get_args

import pytest

from indexer.gallery import Gallery
from indexer.identify import Identifier
from streamer.analysis import FaceResult, FrameResult, face_crop_jpeg
from streamer.bench_setup import decode_clip, enroll_people, temporary_home
from streamer.events import EventType, ExpressionLabel, read_events
from streamer.track_expression import TrackExpression
from streamer.tracking import CameraTracker
from tests.conftest import PEOPLE, people_image, require
from tests.models.expression_files import installed_expression_file
from tests.streamer.conftest import CLIP, run_worker_then_tracker
from tests.streamer.test_track_attributes import face_of
from tests.streamer.test_tracking import feed, make_frame
from vigil.config import Settings
from vigil.config.streamer import CameraConfig, TrackerConfig
from vigil.models.expression import LABELS
from vigil.models.pipeline import FacePipeline
from vigil.streams import StreamEntry

OBAMA = "Barack Obama"
OBAMA_FRAMES = (215, 275)  # Obama in the audience, the clip's last two seconds
FRAME_STEP = 6  # 5 frames a second, what the service analyses


def smiling_face(pipeline: FacePipeline) -> FaceResult:
    """Obama's smiling enrolment photo as a worker of an opted-in camera reports it: with its crop."""
    face = face_of(pipeline, PEOPLE / "obama.jpg")
    return dataclasses.replace(face, crop_jpeg=face_crop_jpeg(people_image("obama.jpg"), face.box))


def test_the_event_schema_has_the_models_labels_in_order() -> None:
    assert get_args(ExpressionLabel) == LABELS


def test_an_opted_in_tracks_events_carry_its_expression(pipeline: FacePipeline) -> None:
    # given a smiling stranger's face with its crop on 10 frames, and the tracker estimating expression
    installed_expression_file()
    face = smiling_face(pipeline)
    models_dir = installed_expression_file().parent
    tracker = CameraTracker(
        "door", TrackerConfig(unknown_after_frames=8), "run1", expression=TrackExpression(models_dir)
    )
    # when tracked to its end (its state saved on the way)
    events = feed(tracker, [make_frame(n, [face]) for n in range(10)])
    snapshot, tracks = tracker.snapshot_parts()
    events += tracker.end_all()
    # then the unknown event and the track's end carry the same expression: happy, seven probabilities
    unknown, ended = events
    assert unknown.expression is not None and ended.expression == unknown.expression
    assert unknown.expression.label == "happy", unknown.expression
    assert list(unknown.expression.probabilities) == list(LABELS)
    # and a tracker restored from the saved state keeps it
    restored = CameraTracker("door", TrackerConfig(unknown_after_frames=8), "run1")
    restored.restore(snapshot, tracks)
    assert [track.expression for track in restored.tracks] == [unknown.expression]


def test_without_crops_or_an_estimator_events_carry_no_expression(pipeline: FacePipeline) -> None:
    installed_expression_file()
    face = smiling_face(pipeline)
    uncropped = face_of(pipeline, PEOPLE / "obama.jpg")
    estimate = TrackExpression(installed_expression_file().parent)
    off = CameraTracker("door", TrackerConfig(unknown_after_frames=8), "run1")
    no_crops = CameraTracker("door", TrackerConfig(unknown_after_frames=8), "run1", expression=estimate)
    # a camera without the opt-in (no estimator), and faces that came without a crop
    assert [e.expression for e in feed(off, [make_frame(n, [face]) for n in range(9)])] == [None]
    assert [e.expression for e in feed(no_crops, [make_frame(n, [uncropped]) for n in range(9)])] == [None]


@pytest.mark.redis
@pytest.mark.slow
def test_only_the_opted_in_camera_crops_faces_and_gets_expressions(
    settings: Settings, pipeline: FacePipeline
) -> None:
    installed_expression_file()
    frames = decode_clip(require(CLIP), OBAMA_FRAMES)[::FRAME_STEP]
    cameras = [
        CameraConfig(name="stage", source="clip", analysis=["expression"]),
        CameraConfig(name="hall", source="clip"),
    ]
    streamer = settings.streamer.model_copy(update={"cameras": cameras})
    with temporary_home(settings.model_copy(update={"streamer": streamer})) as (home_settings, client):
        assert CameraConfig(name="x", source="y").analysis == [], "no analysis by default"
        identifier = Identifier.from_settings(Gallery(client), pipeline, home_settings)
        enroll_people(identifier, home_settings, {OBAMA: require(PEOPLE / "obama.jpg")})
        # given the real worker and tracker on the same frames of Obama from both cameras
        run_worker_then_tracker(client, home_settings, pipeline, frames, ("stage", "hall"), "expr")
        # then only the opted-in camera's faces travelled with a crop
        entries: list[StreamEntry] = client.xrange(home_settings.streamer.bus.faces_stream)  # type: ignore[assignment]
        results = [FrameResult.from_fields(fields) for _, fields in entries]
        cropped = {r.camera: any(f.crop_jpeg is not None for f in r.faces) for r in results if r.faces}
        assert cropped == {"stage": True, "hall": False}, cropped
        # and only its events carry an expression, with all seven probabilities
        events = [event for _, event in read_events(client, home_settings.streamer.events)]
        stage = [e for e in events if e.camera == "stage" and e.type is not EventType.TRACK_ENDED]
        hall = [e for e in events if e.camera == "hall"]
        assert stage and hall, events
        assert all(e.expression is not None and set(e.expression.probabilities) == set(LABELS) for e in stage)
        assert all(e.expression is None for e in hall), [e.expression for e in hall]


@pytest.mark.parametrize("keep_unknown_images", [False, True])
def test_a_crop_taken_for_the_expression_only_is_not_kept_with_the_track(
    pipeline: FacePipeline, keep_unknown_images: bool
) -> None:
    # given a stranger's face with its crop, on a camera opted in to expression only (or also to
    # keeping unknown faces' images)
    face = smiling_face(pipeline)
    assert face.crop_jpeg is not None
    crop = base64.b64encode(face.crop_jpeg).decode()
    tracker = CameraTracker(
        "door",
        TrackerConfig(unknown_after_frames=8),
        "run1",
        expression=TrackExpression(installed_expression_file().parent),
        keep_unknown_images=keep_unknown_images,
    )
    # when tracked for a while and its state saved
    feed(tracker, [make_frame(n, [face]) for n in range(10)])
    _, tracks = tracker.snapshot_parts()
    # then the saved track holds the face's image only where the user opted in to images
    assert (crop in "".join(tracks.values())) is keep_unknown_images
    assert (
        all(seen.face.crop_jpeg is not None for seen in tracker.tracks[0].unknown_faces)
        is keep_unknown_images
    )
