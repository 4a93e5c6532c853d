"""Head-pose accuracy (``vigil.models.head_pose``): synthetic rotations and real photos.

Three measures, each honest about its ground truth:

- ``synthetic``: the 3-D landmark model itself, rotated over a grid of known angles (yaw
  ±60°, pitch ±30°, roll ±30°, 15° steps), placed 0.6 to 1.5 m from a 640×480 pinhole camera,
  projected, given Gaussian pixel noise, and recovered. Mean absolute error per angle, by
  |yaw| band. It measures the solver and its sensitivity to noise, not the model's fit to real
  faces (the model is exact here).
- ``frontal``: enrolment-style photos (``../shared/data/people``) whose subjects face the
  camera, by construction within about ±15°; the mean |yaw| and |roll| there bound the bias
  on real faces. No ground truth beyond that.
- ``mirror``: LFW images and their horizontal mirror images. With no labels at all, the yaw of
  the mirror must be the negated yaw (and roll), the pitch the same: the mean of
  ``|yaw + yaw_mirrored| / 2`` measures how much of the estimate is not pose (landmark noise,
  the model's asymmetry).

The detector is the configured one; its landmarks are what the service sees.
"""

from __future__ import annotations

import itertools
import logging
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainer.report import JsonValue, markdown_table
from vigil.image import load_image
from vigil.models.detector import Detector
from vigil.models.head_pose import FACE_MODEL_MM, HeadPose, camera_matrix, head_pose
from vigil.models.pipeline import nearest_to_centre
from vigil.typing import ImageRGB

logger = logging.getLogger(__name__)

SYNTHETIC_SIZE = (640, 480)
YAW_GRID_DEG = tuple(range(-60, 61, 15))
PITCH_GRID_DEG = tuple(range(-30, 31, 15))
ROLL_GRID_DEG = tuple(range(-30, 31, 15))
DISTANCES_MM = (600.0, 1500.0)
YAW_BANDS_DEG = ((0, 15), (15, 30), (30, 45), (45, 61))
DEFAULT_NOISE_PX = 1.0
ANGLES = ("yaw", "pitch", "roll")


@dataclass(frozen=True)
class PoseError:
    """Mean absolute errors in degrees over ``count`` cases."""

    count: int
    yaw: float
    pitch: float
    roll: float

    def to_dict(self) -> dict[str, JsonValue]:
        return {
            "count": self.count,
            "yaw": round(self.yaw, 2),
            "pitch": round(self.pitch, 2),
            "roll": round(self.roll, 2),
        }


@dataclass
class PoseBenchReport:
    """What ``run_pose_bench`` measured."""

    noise_px: float
    synthetic: dict[str, PoseError]
    synthetic_failed: int
    frontal: dict[str, dict[str, float]] = field(default_factory=dict)
    mirror: PoseError | None = None
    mirror_images: int = 0
    lfw_abs_yaw_over_30: float = 0.0

    def to_dict(self) -> dict[str, JsonValue]:
        return {
            "noise_px": self.noise_px,
            "synthetic": {band: error.to_dict() for band, error in self.synthetic.items()},
            "synthetic_failed": self.synthetic_failed,
            "frontal": {name: dict(pose) for name, pose in self.frontal.items()},
            "mirror": None if self.mirror is None else self.mirror.to_dict(),
            "lfw_share_abs_yaw_over_30": round(self.lfw_abs_yaw_over_30, 4),
        }

    def to_markdown(self) -> str:
        sections = [
            "# Head pose (5 landmarks, solvePnP)",
            "",
            f"## Synthetic rotations ({self.noise_px:g} px noise; mean absolute error, degrees)",
            "",
            markdown_table(
                [
                    (band, str(e.count), f"{e.yaw:.2f}", f"{e.pitch:.2f}", f"{e.roll:.2f}")
                    for band, e in self.synthetic.items()
                ],
                header=("|yaw| band", "cases", "yaw", "pitch", "roll"),
            ),
            f"Cases without an answer: {self.synthetic_failed}.",
            "",
            "## Frontal photos (subject faces the camera; estimates in degrees)",
            "",
            markdown_table(
                [
                    (name, f"{pose['yaw']:.1f}", f"{pose['pitch']:.1f}", f"{pose['roll']:.1f}")
                    for name, pose in self.frontal.items()
                ],
                header=("photo", "yaw", "pitch", "roll"),
            ),
        ]
        if self.mirror is not None:
            sections += [
                f"## Mirror consistency on {self.mirror.count} LFW faces (|a + a_mirrored| / 2, "
                "pitch |p - p_mirrored| / 2; degrees)",
                "",
                markdown_table(
                    [
                        ("yaw", f"{self.mirror.yaw:.2f}"),
                        ("pitch", f"{self.mirror.pitch:.2f}"),
                        ("roll", f"{self.mirror.roll:.2f}"),
                    ],
                    header=("angle", "mean inconsistency"),
                ),
                f"Share of these LFW faces with |yaw| > 30°: {self.lfw_abs_yaw_over_30:.1%}.",
            ]
        return "\n".join(sections) + "\n"


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The model-to-camera rotation of a head at these angles (degrees; ``head_pose``'s signs)."""
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    rot_y = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rot_x = np.array([[1, 0, 0], [0, math.cos(-p), -math.sin(-p)], [0, math.sin(-p), math.cos(-p)]])
    rot_z = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    rotation: np.ndarray = np.diag([1.0, -1.0, -1.0]) @ rot_y @ rot_x @ rot_z
    return rotation


def project_model(
    pose: HeadPose,
    image_size: tuple[int, int],
    distance_mm: float,
    offset_px: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """``(5, 2)`` pixel landmarks of the 3-D model at ``pose``, ``distance_mm`` in front of the camera.

    Args:
        offset_px: Where the face sits relative to the image centre.
    """
    camera = camera_matrix(*image_size)
    focal = camera[0, 0]
    translation = np.array(
        [offset_px[0] * distance_mm / focal, offset_px[1] * distance_mm / focal, distance_mm]
    )
    points = rotation_matrix(pose.yaw, pose.pitch, pose.roll) @ FACE_MODEL_MM.T + translation[:, None]
    projected = (camera @ points).T
    pixels: np.ndarray = projected[:, :2] / projected[:, 2:]
    return pixels


def synthetic_errors(noise_px: float, seed: int = 0) -> tuple[dict[str, PoseError], int]:
    """Mean absolute errors over the rotation grid, by |yaw| band (and ``all``), and the failures."""
    rng = np.random.default_rng(seed)
    errors: dict[str, list[tuple[float, float, float]]] = {}
    failed = 0
    for yaw, pitch, roll, distance in itertools.product(
        YAW_GRID_DEG, PITCH_GRID_DEG, ROLL_GRID_DEG, DISTANCES_MM
    ):
        truth = HeadPose(float(yaw), float(pitch), float(roll))
        points = project_model(truth, SYNTHETIC_SIZE, distance)
        points = points + rng.normal(0.0, noise_px, points.shape)
        found = head_pose(points, SYNTHETIC_SIZE)
        if found is None:
            failed += 1
            continue
        error = (abs(found.yaw - yaw), abs(found.pitch - pitch), abs(found.roll - roll))
        band = next(_band_label(low, high) for low, high in YAW_BANDS_DEG if low <= abs(yaw) < high)
        errors.setdefault(band, []).append(error)
        errors.setdefault("all", []).append(error)
    order = [_band_label(low, high) for low, high in YAW_BANDS_DEG] + ["all"]
    return {band: _mean_error(errors[band]) for band in order if band in errors}, failed


def central_pose(detector: Detector, image: ImageRGB) -> HeadPose | None:
    """The pose of the face nearest the image centre, or None without one."""
    [faces] = detector.detect([image])
    if len(faces) == 0:
        return None
    index = nearest_to_centre(faces, image.shape[1], image.shape[0])
    return head_pose(faces.landmarks[index], (image.shape[1], image.shape[0]))


def mirror_errors(detector: Detector, paths: Sequence[Path]) -> tuple[PoseError | None, list[HeadPose]]:
    """Mirror inconsistency over the photos where both the photo and its mirror gave a pose."""
    differences: list[tuple[float, float, float]] = []
    poses: list[HeadPose] = []
    for path in paths:
        image = load_image(path)
        pose = central_pose(detector, image)
        mirrored = central_pose(detector, np.ascontiguousarray(image[:, ::-1]))
        if pose is None or mirrored is None:
            continue
        poses.append(pose)
        differences.append(
            (
                abs(pose.yaw + mirrored.yaw) / 2,
                abs(pose.pitch - mirrored.pitch) / 2,
                abs(pose.roll + mirrored.roll) / 2,
            )
        )
    return (_mean_error(differences) if differences else None), poses


def lfw_sample(lfw_dir: Path, count: int) -> list[Path]:
    """Every n-th image of LFW (sorted), ``count`` in all: a fixed sample."""
    images = sorted((lfw_dir / "lfw-deepfunneled").glob("*/*.jpg"))
    if not images or count <= 0:
        return []
    step = max(len(images) // count, 1)
    return images[::step][:count]


def run_pose_bench(
    detector: Detector,
    frontal_photos: Sequence[Path],
    lfw_dir: Path | None,
    lfw_images: int = 200,
    noise_px: float = DEFAULT_NOISE_PX,
) -> PoseBenchReport:
    """Measure head pose on synthetic rotations, frontal photos and mirrored LFW images."""
    synthetic, failed = synthetic_errors(noise_px)
    report = PoseBenchReport(noise_px, synthetic, failed)
    for path in frontal_photos:
        pose = central_pose(detector, load_image(path))
        if pose is not None:
            report.frontal[path.name] = {
                "yaw": round(pose.yaw, 1),
                "pitch": round(pose.pitch, 1),
                "roll": round(pose.roll, 1),
            }
    if report.frontal:
        values = list(report.frontal.values())
        report.frontal["mean |angle|"] = {
            angle: round(statistics.fmean(abs(pose[angle]) for pose in values), 1) for angle in ANGLES
        }
    if lfw_dir is not None:
        paths = lfw_sample(lfw_dir, lfw_images)
        report.mirror, poses = mirror_errors(detector, paths)
        report.mirror_images = len(poses)
        if poses:
            report.lfw_abs_yaw_over_30 = sum(abs(pose.yaw) > 30 for pose in poses) / len(poses)
    return report


def _band_label(low: int, high: int) -> str:
    return f"{low}-{high - 1 if high % 5 else high}°"


def _mean_error(values: Sequence[tuple[float, float, float]]) -> PoseError:
    yaw, pitch, roll = (statistics.fmean(column) for column in zip(*values, strict=True))
    return PoseError(len(values), yaw, pitch, roll)
