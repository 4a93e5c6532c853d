"""Alignment: the similarity fit and the chip warp."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import people_image
from vigil.config import AlignerConfig
from vigil.models.aligner import MTCNN_TEMPLATE_150, FaceAligner, similarity_transform, template_for
from vigil.models.pipeline import FacePipeline


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


@pytest.mark.parametrize(
    ("angle_deg", "scale", "shift"),
    [
        (0.0, 1.0, (0.0, 0.0)),  # identity
        (30.0, 2.5, (100.0, -40.0)),  # rotated, enlarged, moved
        (-170.0, 0.3, (5.0, 5.0)),  # nearly upside down, shrunk
    ],
)
def test_similarity_transform_recovers_known_transform(angle_deg: float, scale: float, shift: tuple) -> None:
    # given template points moved by a known similarity
    theta = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    truth = np.hstack([scale * rotation, np.array(shift)[:, None]])
    moved = _apply(truth, MTCNN_TEMPLATE_150)
    # when fitted, then the same transform comes back
    np.testing.assert_allclose(similarity_transform(MTCNN_TEMPLATE_150, moved), truth, atol=1e-9)


def test_similarity_transform_never_reflects() -> None:
    # given a mirrored point set (a reflection is not a similarity)
    mirrored = MTCNN_TEMPLATE_150 * np.array([-1.0, 1.0])
    matrix = similarity_transform(MTCNN_TEMPLATE_150, mirrored)
    # then the fitted linear part has a positive determinant
    assert np.linalg.det(matrix[:, :2]) > 0


def test_template_rescales_about_the_chip_centre() -> None:
    # the 150/0.25 template is itself at 150/0.25, and doubling the size doubles offsets from the centre
    np.testing.assert_allclose(template_for(150, 0.25), MTCNN_TEMPLATE_150)
    np.testing.assert_allclose(template_for(299, 0.25) - 149, (MTCNN_TEMPLATE_150 - 74.5) * 2, atol=1e-9)
    # more padding shrinks the face towards the centre
    spread = np.ptp(template_for(150, 0.5)[:, 0])
    assert spread < np.ptp(MTCNN_TEMPLATE_150[:, 0])


def test_chip_of_rotated_photo_matches_chip_of_upright_photo(pipeline: FacePipeline) -> None:
    # given a real face, upright and rotated by 25° in the photo, with the upright photo's
    # landmarks carried over by the same rotation
    import cv2

    image = people_image("obama.jpg")
    height, width = image.shape[:2]
    rotation = cv2.getRotationMatrix2D((width / 2, height / 2), 25, 1.0)
    rotated = cv2.warpAffine(image, rotation, (width, height))
    [faces] = pipeline.detector.detect([image])
    upright_landmarks = faces.landmarks[0]
    rotated_landmarks = upright_landmarks @ rotation[:, :2].T + rotation[:, 2]
    aligner = FaceAligner(AlignerConfig(), chip_size_px=150)
    chips = []
    for photo, landmarks in ((image, upright_landmarks), (rotated, rotated_landmarks)):
        # when aligned, the landmarks land on the template (eyes tightly, mouth more loosely)
        matrix = aligner.chip_to_image(landmarks)
        in_chip = (landmarks - matrix[:, 2]) @ np.linalg.inv(matrix[:, :2]).T
        error = np.linalg.norm(in_chip - aligner.template, axis=1)
        assert error[:2].max() < 4.0 and error.max() < 9.0, (
            f"landmarks off the template by {error.round(1)} px"
        )
        chips.append(aligner.align(photo, landmarks[None])[0])
    # then both chips show the same upright face: pixels agree but for resampling
    assert chips[0].shape == (150, 150, 3) and chips[0].dtype == np.uint8
    difference = np.abs(chips[0].astype(np.int16) - chips[1].astype(np.int16)).mean()
    assert difference < 3.0, f"chips differ by {difference:.1f} grey levels on average"


def test_detector_finds_the_landmarks_of_a_rotated_face(pipeline: FacePipeline) -> None:
    # given the same face upright and rotated by 25°
    import cv2

    image = people_image("obama.jpg")
    height, width = image.shape[:2]
    rotation = cv2.getRotationMatrix2D((width / 2, height / 2), 25, 1.0)
    [upright] = pipeline.detector.detect([image])
    [rotated] = pipeline.detector.detect([cv2.warpAffine(image, rotation, (width, height))])
    # when the upright landmarks are rotated the same way
    expected = upright.landmarks[0] @ rotation[:, :2].T + rotation[:, 2]
    # then the detector's landmarks on the rotated photo are near them: within a fifth of the
    # eye distance (YuNet measured 7-21 px of 107, MTCNN 2-10: YuNet is the less rotation-robust)
    eye_distance = np.linalg.norm(expected[1] - expected[0])
    error = np.linalg.norm(rotated.landmarks[0] - expected, axis=1)
    assert error.max() < eye_distance / 5, (
        f"landmarks off by {error.round(1)} px (eyes {eye_distance:.0f} px apart)"
    )


def test_no_faces_gives_no_chips() -> None:
    aligner = FaceAligner(AlignerConfig(), chip_size_px=150)
    chips = aligner.align(np.zeros((50, 50, 3), np.uint8), np.zeros((0, 5, 2), np.float32))
    assert chips.shape == (0, 150, 150, 3)
