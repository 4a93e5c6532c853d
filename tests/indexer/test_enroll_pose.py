"""Enrolment and head pose: strong profiles are refused, turned faces warned about.

The profile is a real one: Alex Lacamoire in profile in a frame of the Hamilton clip
(``tests/models/test_head_pose.py`` checks that frame's pose on its own).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from indexer.calibration import CalibrationSource
from indexer.enroll import enroll_person, pose_refusal
from indexer.gallery import Gallery
from indexer.identify import Identifier
from tests.conftest import PEOPLE, require
from tests.models.test_head_pose import profile_frame
from trainer.bench_pose import SYNTHETIC_SIZE, project_model
from vigil.config import IndexerConfig
from vigil.models.head_pose import HeadPose
from vigil.models.pipeline import FacePipeline

pytestmark = pytest.mark.redis

HOME_WITHOUT_CALIBRATION = Path(__file__).parent


def _identifier(gallery: Gallery, pipeline: FacePipeline, config: IndexerConfig) -> Identifier:
    return Identifier(
        gallery, pipeline, CalibrationSource(config, HOME_WITHOUT_CALIBRATION, pipeline.embedder.version)
    )


@pytest.fixture
def profile_photo(tmp_path: Path) -> Path:
    path = tmp_path / "profile.png"
    cv2.imwrite(str(path), cv2.cvtColor(profile_frame(), cv2.COLOR_RGB2BGR))
    return path


def test_a_profile_is_refused_with_its_reason(
    gallery: Gallery, pipeline: FacePipeline, profile_photo: Path
) -> None:
    # given a frontal photo and a real profile, under the default limit (45°)
    config = IndexerConfig()
    frontal = require(PEOPLE / "lin-manuel-miranda.png")
    # when enrolled together
    report = enroll_person(
        _identifier(gallery, pipeline, config), config, "Someone", [frontal, profile_photo]
    )
    # then the frontal photo is the only template and the profile's rejection gives its yaw
    assert report.accepted == [frontal]
    [rejected] = report.rejected
    assert rejected.path == profile_photo
    assert "(yaw), beyond the 45° limit" in rejected.reason, rejected.reason
    assert len(gallery.identity_templates(report.identity.identity_id)) == 1


def test_a_lenient_limit_accepts_the_profile_with_a_warning(
    gallery: Gallery, pipeline: FacePipeline, profile_photo: Path
) -> None:
    # given a limit of 90° (everything passes)
    config = IndexerConfig(max_enrol_yaw_deg=90.0)
    # when the profile is enrolled
    report = enroll_person(_identifier(gallery, pipeline, config), config, "Someone", [profile_photo])
    # then it is accepted, and the warning says how far the face is turned
    assert report.accepted == [profile_photo]
    assert any("profile.png: face turned" in warning for warning in report.warnings), report.warnings


@pytest.mark.parametrize(
    ("yaw", "expected"),
    [
        (0.0, None),  # frontal: nothing to say
        (20.0, None),  # under the warning limit (25°)
        (35.0, False),  # warned, accepted
        (-35.0, False),  # the same turned the other way
        (55.0, True),  # beyond the limit (45°): refused
        (-55.0, True),
    ],
)
def test_pose_refusal_by_yaw(yaw: float, expected: bool | None) -> None:
    # given the model turned by a known yaw
    landmarks = project_model(HeadPose(yaw, 0.0, 0.0), SYNTHETIC_SIZE, 900.0)
    # when judged under the default limits
    outcome = pose_refusal(landmarks, box_around(landmarks), IndexerConfig())
    # then it passes, is warned about, or is refused
    if expected is None:
        assert outcome is None
    else:
        assert outcome is not None and outcome[1] is expected and outcome[0] == pytest.approx(yaw, abs=2.5)


def test_landmarks_without_a_pose_are_let_through() -> None:
    assert pose_refusal(np.full((5, 2), np.nan), np.array([0.0, 0.0, 50.0, 50.0]), IndexerConfig()) is None


def box_around(landmarks: np.ndarray) -> np.ndarray:
    """A face box around the 5 points, as the detectors draw one (about twice the eyes' spread)."""
    centre = landmarks.mean(axis=0)
    half = 1.1 * float(np.ptp(landmarks[:, 0]))
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])


def test_a_face_looking_at_the_camera_from_the_edge_of_a_wide_photo_is_frontal() -> None:
    # given a face 550 px right of the centre of a 1200×800 photo, turned to face the camera
    # (its yaw about the camera's axis is -24.6°: beside the 25° warning limit)
    turned = -math.degrees(math.atan(550 / 1200))
    landmarks = project_model(HeadPose(turned, 0.0, 0.0), (1200, 800), 1000.0, (550.0, 0.0))
    # when judged, then it is frontal to the line of sight: nothing to say
    assert pose_refusal(landmarks, box_around(landmarks), IndexerConfig(warn_enrol_yaw_deg=10.0)) is None
