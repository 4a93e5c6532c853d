"""Age and gender in events: once per track, from its faces' real embeddings with the shipped head, or
from its best chips with the fine-tuned model."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from indexer.gallery import Gallery
from indexer.identify import Identifier
from streamer.analysis import CHIPS_TTL_S, FaceResult, FrameResult, chip_jpeg, decode_jpeg
from streamer.bench_setup import decode_clip, enroll_people, temporary_home
from streamer.events import EventType, read_events
from streamer.track_attributes import TrackAttributes, TrackChipAttributes, event_attributes
from streamer.tracking import CameraTracker
from streamer.worker import Worker
from tests.conftest import PEOPLE, SHARED_DATA, require
from tests.models.attribute_tails import promote_tail, untrained_tail
from tests.streamer.conftest import CLIP, run_worker_then_tracker
from tests.streamer.test_tracking import feed, make_frame
from vigil.config import Settings
from vigil.config.streamer import CameraConfig, TrackerConfig
from vigil.errors import ModelLoadError
from vigil.image import load_image
from vigil.models.attribute_tail import load_tail_backbone, tail_aligner, track_attributes_from_chips
from vigil.models.pipeline import FacePipeline
from vigil.streams import StreamEntry

FACENET_PEOPLE = SHARED_DATA / "people" / "facenet_pytorch" / "test_images"
OBAMA = "Barack Obama"
OBAMA_FRAMES = (215, 275)  # Obama in the audience, the clip's last two seconds
FRAME_STEP = 6  # 5 frames a second, what the service analyses


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


def with_chip(face: FaceResult, photo: Path, settings: Settings) -> FaceResult:
    """``face`` as a worker sends it with ``attribute_model: fine_tuned``: with its dlib-layout chip."""
    chip = tail_aligner(settings.aligner).align(load_image(photo), np.asarray([face.landmarks]))[0]
    return dataclasses.replace(face, chip_jpeg=chip_jpeg(chip))


def test_a_fine_tuned_tracks_events_carry_the_tails_answer_for_its_chips(
    pipeline: FacePipeline, settings: Settings, tmp_path: Path
) -> None:
    # given the fine-tuned model in force, and a stranger's face sent with its chip on 10 frames
    backbone = load_tail_backbone(settings.cache_dir)
    tail = untrained_tail(backbone)
    promote_tail(tmp_path, backbone, tail)
    photo = require(PEOPLE / "obama.jpg")
    face = with_chip(face_of(pipeline, photo), photo, settings)
    assert face.chip_jpeg is not None
    estimate = TrackChipAttributes(settings.model_copy(update={"home": tmp_path}))
    tracker = CameraTracker("door", TrackerConfig(unknown_after_frames=8), "run1", chip_attributes=estimate)
    # when tracked to its end (its state saved on the way)
    events = feed(tracker, [make_frame(n, [face]) for n in range(10)])
    _, tracks = tracker.snapshot_parts()
    kept = [seen.face for seen in tracker.tracks[0].unknown_faces] + [tracker.tracks[0].last_face]
    events += tracker.end_all()
    # then its events carry the tail's answer for that chip, as it travelled (JPEG)
    decoded = decode_jpeg(face.chip_jpeg)
    assert decoded is not None
    expected = event_attributes(track_attributes_from_chips(backbone, tail, decoded[None]))
    unknown, ended = events
    assert unknown.attributes == expected and ended.attributes == expected
    # and no chip is kept with the track or its saved state (read once, for age and gender)
    assert base64.b64encode(face.chip_jpeg).decode() not in "".join(tracks.values())
    assert kept and all(face is not None and face.chip_jpeg is None for face in kept)


def test_a_chip_the_model_cannot_read_costs_the_attributes_not_the_tracker(
    pipeline: FacePipeline, settings: Settings, tmp_path: Path
) -> None:
    # given the fine-tuned model in force and a face whose chip is a 4×4 image (a foreign entry)
    backbone = load_tail_backbone(settings.cache_dir)
    promote_tail(tmp_path, backbone, untrained_tail(backbone))
    tiny = chip_jpeg(np.zeros((4, 4, 3), np.uint8))
    face = dataclasses.replace(face_of(pipeline, require(PEOPLE / "obama.jpg")), chip_jpeg=tiny)
    estimate = TrackChipAttributes(settings.model_copy(update={"home": tmp_path}))
    tracker = CameraTracker("door", TrackerConfig(unknown_after_frames=8), "run1", chip_attributes=estimate)
    # when it is tracked, the track's events carry no attributes, and nothing is raised
    events = feed(tracker, [make_frame(n, [face]) for n in range(9)])
    assert [event.attributes for event in events] == [None]


@pytest.mark.redis
def test_without_a_promoted_tail_the_worker_refuses_to_start(
    pipeline: FacePipeline, settings: Settings
) -> None:
    fine_tuned = settings.streamer.tracker.model_copy(update={"attribute_model": "fine_tuned"})
    streamer = settings.streamer.model_copy(update={"tracker": fine_tuned})
    with temporary_home(settings.model_copy(update={"streamer": streamer})) as (home_settings, client):
        worker = Worker(client, home_settings, pipeline)
        with pytest.raises(ModelLoadError, match="no fine-tuned attribute model is promoted"):
            worker.start()


@pytest.mark.redis
@pytest.mark.slow
def test_the_service_with_the_fine_tuned_model_passes_chips_apart_and_estimates_once_per_track(
    settings: Settings, pipeline: FacePipeline
) -> None:
    frames = decode_clip(require(CLIP), OBAMA_FRAMES)[::FRAME_STEP]
    fine_tuned = settings.streamer.tracker.model_copy(update={"attribute_model": "fine_tuned"})
    streamer = settings.streamer.model_copy(
        update={"tracker": fine_tuned, "cameras": [CameraConfig(name="stage", source="clip")]}
    )
    with temporary_home(settings.model_copy(update={"streamer": streamer})) as (home_settings, client):
        backbone = load_tail_backbone(home_settings.cache_dir)
        promote_tail(home_settings.home, backbone, untrained_tail(backbone))
        identifier = Identifier.from_settings(Gallery(client), pipeline, home_settings)
        enroll_people(identifier, home_settings, {OBAMA: require(PEOPLE / "obama.jpg")})
        stream = home_settings.streamer.bus.faces_stream
        waiting: list[bytes] = []

        def look_at_the_chips() -> None:
            # the worker's results name their chips' key and carry no chip themselves
            entries: list[StreamEntry] = client.xrange(stream)  # type: ignore[assignment]
            results = [FrameResult.from_fields(fields) for _, fields in entries]
            assert all(b'"chip"' not in fields[b"result"] for _, fields in entries)
            keys = [r.chips_key for r in results if r.faces]
            assert keys and all(keys), results
            waiting.extend(client.keys(f"{stream}:chips:*"))  # type: ignore[arg-type]
            assert len(waiting) == len(keys)
            # each key holds a 150 px chip per face, and expires
            chip = decode_jpeg(client.hget(keys[0], "0") or b"")  # type: ignore[arg-type]
            assert chip is not None and chip.shape == (150, 150, 3)
            assert 0 < client.ttl(keys[0]) <= CHIPS_TTL_S  # type: ignore[arg-type]

        # given the real worker and tracker on frames of Obama
        run_worker_then_tracker(
            client, home_settings, pipeline, frames, ("stage",), "tail", look_at_the_chips
        )
        # then the tracker deleted every chip once read
        assert waiting and not client.keys(f"{stream}:chips:*")
        # and Obama's events carry age and gender, the same on the recognized and ended events
        events = [event for _, event in read_events(client, home_settings.streamer.events)]
        obama = [e for e in events if e.name == OBAMA]
        assert [e.type for e in obama] == [EventType.RECOGNIZED, EventType.TRACK_ENDED], events
        assert obama[0].attributes is not None and obama[1].attributes == obama[0].attributes
