"""Head pose (yaw, pitch, roll in degrees) from the detector's 5 landmarks, with no weights.

``cv2.solvePnP`` fits ``FACE_MODEL_MM``, a generic 3-D face of the same five points, to the
landmarks seen through a pinhole camera. The model's frontal layout (x, y) is the mean
position of MTCNN's landmarks on 1,904 LFW faces (``MTCNN_TEMPLATE_150`` of
``vigil.models.aligner``), scaled to a 62 mm pupil distance, so that the average LFW face, which
is near-frontal, reads as 0°; the depths (z) are anthropometric: eye centres 24 mm and mouth
corners 28 mm behind the nose tip. YuNet's points are the same five points (its eye landmarks
sit on the pupils too), so one model serves both detectors.

Conventions (the subject's point of view, in camera coordinates):

- ``yaw`` > 0: the subject turns to their left (their nose moves to the image's right);
- ``pitch`` > 0: the subject looks up;
- ``roll`` > 0: the head turns counter-clockwise in the image (the eye line rises to the
  image's right, i.e. the subject tilts towards their right shoulder).

A horizontally mirrored photo gives the negated yaw and roll and the same pitch
(``trainer/bench_pose.py`` checks it on real photos).

Two cameras:

- ``head_pose(landmarks, image_size)``: principal point at the image centre, focal length the
  image's longer side (a ~53° field of view, typical of webcams and phones). The angles are
  relative to the camera's axis.
- ``head_pose_in_box(landmarks, box_xyxy)``: when the frame size is unknown (events carry
  only the face's box and landmarks), the principal point is the box centre and the focal
  length ``BOX_FOCAL_FACTOR`` box widths. The angles are then relative to the line of sight
  from the camera to the face, which is what decides how frontal the face looks.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

_PUPIL_DISTANCE_MM = 62.0
_TEMPLATE_PX_TO_MM = _PUPIL_DISTANCE_MM / (102.21 - 47.91)
# MTCNN_TEMPLATE_150 (vigil.models.aligner), centred on the eyes' midpoint, y up, in mm.
FACE_MODEL_MM: npt.NDArray[np.float64] = np.array(
    [
        [-(102.21 - 47.91) / 2, -(46.08 - 46.04), -24.0 / _TEMPLATE_PX_TO_MM],
        [(102.21 - 47.91) / 2, -(46.00 - 46.04), -24.0 / _TEMPLATE_PX_TO_MM],
        [74.50 - 75.06, -(78.06 - 46.04), 0.0],
        [50.89 - 75.06, -(105.49 - 46.04), -28.0 / _TEMPLATE_PX_TO_MM],
        [99.08 - 75.06, -(105.41 - 46.04), -28.0 / _TEMPLATE_PX_TO_MM],
    ]
) * np.array([_TEMPLATE_PX_TO_MM, _TEMPLATE_PX_TO_MM, _TEMPLATE_PX_TO_MM])
"""``(5, 3)`` model points in mm (x to the image's right, y up, z towards the camera), in
``FaceDetections``' order: image-left eye, image-right eye, nose tip, image-left and image-right
mouth corner of a frontal face."""
MIN_EYE_DISTANCE_PX = 6.0
"""Below this distance between the eyes, the landmarks are too coarse for a pose: None."""
BOX_FOCAL_FACTOR = 10.0
"""``head_pose_in_box``'s focal length in box widths: a face at ~1.5 m through a typical lens."""


@dataclass(frozen=True)
class HeadPose:
    """A head's orientation in degrees (see the module docstring for the signs).

    Attributes:
        yaw: Turn about the vertical axis; > 0: to the subject's left.
        pitch: Nod; > 0: looking up.
        roll: Tilt in the image plane; > 0: counter-clockwise as seen in the image.
    """

    yaw: float
    pitch: float
    roll: float

    def frontal_factor(self) -> float:
        """How frontal the face is, 1 (frontal) to 0 (profile): cos(yaw) × cos(pitch), clipped at 0."""
        return max(math.cos(math.radians(self.yaw)) * math.cos(math.radians(self.pitch)), 0.0)

    def rounded(self, digits: int = 1) -> HeadPose:
        return HeadPose(round(self.yaw, digits), round(self.pitch, digits), round(self.roll, digits))


def pose_to_dict(pose: HeadPose | None) -> dict[str, float] | None:
    """``{"yaw", "pitch", "roll"}`` rounded to 0.1°, or None: a face's ``pose`` on the wire."""
    return (
        None
        if pose is None
        else {"yaw": round(pose.yaw, 1), "pitch": round(pose.pitch, 1), "roll": round(pose.roll, 1)}
    )


def camera_matrix(width: float, height: float, focal_px: float | None = None) -> npt.NDArray[np.float64]:
    """A pinhole camera: principal point at the centre, focal length the longer side unless given."""
    focal = float(max(width, height)) if focal_px is None else focal_px
    return np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])


def head_pose(landmarks: npt.ArrayLike | None, image_size: tuple[int, int]) -> HeadPose | None:
    """The pose of one face, relative to the camera's axis; None when it cannot be told.

    Args:
        landmarks: ``(5, 2)`` pixel points in ``FaceDetections``' order.
        image_size: The frame's (width, height) in pixels.

    Returns:
        The pose, or None for missing, non-finite or degenerate landmarks (collinear, eyes
        closer than ``MIN_EYE_DISTANCE_PX``, eyes swapped) or a failed fit. Never raises.
    """
    width, height = image_size
    if not (width > 0 and height > 0):
        return None
    return _solve(landmarks, camera_matrix(width, height))


def head_pose_in_box(landmarks: npt.ArrayLike | None, box_xyxy: npt.ArrayLike) -> HeadPose | None:
    """The pose of one face relative to the line of sight, when the frame size is unknown.

    Args:
        landmarks: ``(5, 2)`` pixel points in ``FaceDetections``' order.
        box_xyxy: The face's box ``(4,)`` in the same pixels.
    """
    try:
        x1, y1, x2, y2 = (float(v) for v in np.asarray(box_xyxy, np.float64).reshape(4))
    except (TypeError, ValueError):
        return None
    side = max(x2 - x1, y2 - y1)
    if not (math.isfinite(side) and side > 0):
        return None
    focal = BOX_FOCAL_FACTOR * side
    camera = np.array([[focal, 0.0, (x1 + x2) / 2], [0.0, focal, (y1 + y2) / 2], [0.0, 0.0, 1.0]])
    return _solve(landmarks, camera)


def _solve(landmarks: npt.ArrayLike | None, camera: npt.NDArray[np.float64]) -> HeadPose | None:
    points = _valid_points(landmarks)
    if points is None:
        return None
    try:
        ok, rotation, _ = cv2.solvePnP(FACE_MODEL_MM, points, camera, None, flags=cv2.SOLVEPNP_EPNP)
        if ok:
            ok, rotation, _translation = cv2.solvePnP(
                FACE_MODEL_MM,
                points,
                camera,
                None,
                rvec=rotation,
                tvec=_translation_guess(points, camera),
                useExtrinsicGuess=True,
                flags=cv2.SOLVEPNP_ITERATIVE,
            )
    except cv2.error:
        logger.debug("solvePnP failed on landmarks %s", points.tolist())
        return None
    if not ok or not np.all(np.isfinite(rotation)):
        return None
    matrix, _ = cv2.Rodrigues(rotation)
    return _angles(np.asarray(matrix, np.float64))


def _valid_points(landmarks: npt.ArrayLike | None) -> npt.NDArray[np.float64] | None:
    if landmarks is None:
        return None
    try:
        points = np.asarray(landmarks, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if points.shape != (5, 2) or not np.all(np.isfinite(points)):
        return None
    eye_vector = points[1] - points[0]
    eye_distance = float(np.linalg.norm(eye_vector))
    if eye_distance < MIN_EYE_DISTANCE_PX or eye_vector[0] <= 0:
        return None  # too small, or the eyes swapped (upside down: beyond what the model fits)
    centred = points - points.mean(axis=0)
    singular = np.linalg.svd(centred, compute_uv=False)
    if singular[1] < 0.05 * singular[0]:
        return None  # (nearly) collinear: no 2-D layout to fit
    return np.ascontiguousarray(points)


def _translation_guess(
    points: npt.NDArray[np.float64], camera: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Where the face is: in front of the camera, at the distance its eye spacing implies."""
    focal = camera[0, 0]
    distance = focal * _PUPIL_DISTANCE_MM / float(np.linalg.norm(points[1] - points[0]))
    centre = points.mean(axis=0)
    x = (centre[0] - camera[0, 2]) * distance / focal
    y = (centre[1] - camera[1, 2]) * distance / focal
    return np.array([[x], [y], [distance]])


def _angles(rotation: npt.NDArray[np.float64]) -> HeadPose | None:
    """Yaw, pitch and roll of a model-to-camera rotation.

    The model has y up and z towards the camera; the camera has y down and z forward. So the
    rotation of a frontal face is diag(1, -1, -1); the head's own rotation is ``R · diag(1, -1, -1)``
    expressed in a y-up, z-towards-camera frame, decomposed as yaw (about y), then pitch
    (about x, negated so that up is positive), then roll (about z).
    """
    flip = np.diag([1.0, -1.0, -1.0])
    head = flip @ rotation  # in the model's frame: identity for a frontal face
    # head = R_y(yaw) · R_x(pitch) · R_z(roll)
    # R_x(p) turns the nose down for p > 0; pitch is reported looking up positive.
    pitch = math.asin(float(np.clip(head[1, 2], -1.0, 1.0)))
    yaw = math.atan2(float(head[0, 2]), float(head[2, 2]))
    roll = math.atan2(float(head[1, 0]), float(head[1, 1]))
    pose = HeadPose(math.degrees(yaw), math.degrees(pitch), math.degrees(roll))
    if not all(math.isfinite(v) for v in (pose.yaw, pose.pitch, pose.roll)):
        return None
    return pose
