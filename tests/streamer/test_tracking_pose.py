"""Events carry the head pose of the face they rest on; kept unknown faces prefer frontal ones.

On the synthetic tracks of ``test_tracking`` (whose faces have a frontal 5-point layout),
with landmarks moved to turn a face, or made degenerate.
"""

from __future__ import annotations

import json

import numpy as np

from streamer.analysis import FaceResult
from streamer.events import Event, EventType
from streamer.tracking import event_pose, frontal_factor
from tests.streamer.test_tracking import People, feed, make_frame, make_tracker, of_type, walk
from trainer.bench_pose import SYNTHETIC_SIZE, project_model
from vigil.models.head_pose import HeadPose


def _posed(face: FaceResult, yaw: float) -> FaceResult:
    """``face`` with the 3-D model's landmarks at ``yaw``, fitted into its box."""
    points = project_model(HeadPose(yaw, 0.0, 0.0), SYNTHETIC_SIZE, 900.0)
    x1, y1, x2, y2 = face.box
    centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
    scale = 0.5 * (x2 - x1) / float(np.ptp(project_model(HeadPose(0, 0, 0), SYNTHETIC_SIZE, 900.0)[:, 0]))
    moved = (points - points.mean(axis=0)) * scale + centre
    return FaceResult(**{**vars(face), "landmarks": moved.round(1).tolist()})


def test_every_event_carries_the_pose_of_its_face() -> None:
    # given Ada walking through ten frames, facing the camera
    people = People()
    ada = people.person("id-ada", "Ada")
    tracker = make_tracker()
    events = feed(tracker, walk(people, ada, range(10))) + tracker.end_all()
    # then the recognized and track_ended events carry a near-frontal pose
    assert {event.type for event in events} == {EventType.RECOGNIZED, EventType.TRACK_ENDED}
    for event in events:
        assert event.pose is not None, event
        assert abs(event.pose.yaw) < 5 and abs(event.pose.roll) < 5, event.pose
        # and the pose is on the wire, and read back
        assert json.loads(event.to_json())["pose"] == event.pose.model_dump()
        assert Event.model_validate_json(event.to_json()).pose == event.pose


def test_a_turned_face_gives_a_turned_pose_and_bad_landmarks_none() -> None:
    people = People()
    face = people.face(people.person("id-ada", "Ada"), 100.0)
    turned = event_pose(_posed(face, 40.0))
    assert turned is not None and 35 < turned.yaw < 45, turned
    assert event_pose(FaceResult(**{**vars(face), "landmarks": [[0.0, 0.0]] * 5})) is None
    assert event_pose(FaceResult(**{**vars(face), "landmarks": []})) is None


def test_an_unknown_event_with_degenerate_landmarks_has_a_null_pose() -> None:
    # given a stranger whose landmarks are all one point (a broken detector)
    people = People()
    stranger = people.person(None)
    frames = [
        make_frame(
            n, [FaceResult(**{**vars(people.face(stranger, 100.0 + 3 * n)), "landmarks": [[5.0, 5.0]] * 5})]
        )
        for n in range(10)
    ]
    tracker = make_tracker()
    [unknown] = of_type(feed(tracker, frames), EventType.UNKNOWN)
    # then the event is published, without a pose
    assert unknown.pose is None
    assert json.loads(unknown.to_json())["pose"] is None


def test_kept_unknown_faces_prefer_frontal_ones() -> None:
    # given a stranger seen turned 60° in the first frames, then frontal, equally sure and large
    people = People()
    stranger = people.person(None)
    frames = []
    for n in range(10):
        face = people.face(stranger, 100.0 + 3 * n)
        frames.append(make_frame(n, [_posed(face, 60.0 if n < 5 else 0.0)]))
    tracker = make_tracker()
    [unknown] = of_type(feed(tracker, frames), EventType.UNKNOWN)
    outcome = tracker.take_outcome(unknown.event_id)
    assert outcome is not None
    # then the kept faces are the frontal ones first
    factors = [frontal_factor(seen.face) for seen in outcome.unknown_faces]
    assert factors == sorted(factors, reverse=True)
    assert factors[0] > 0.95 and factors[-1] < 0.6, factors
