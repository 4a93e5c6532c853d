"""Fit ``MTCNN_TEMPLATE_150``: where MTCNN's landmarks sit on dlib's own face chips.

For each image, dlib's pipeline (HOG detector, 5-point shape predictor,
``get_face_chip_details(size=150, padding=0.25)``) gives the chip dlib's ResNet was
trained on, as the map ``x_img = C + k·R(θ)·(x_chip − 74.5)`` with ``k = (w − 1)/149``
(``w`` = dlib's rectangle width, ``C`` its centre, ``θ`` its angle). MTCNN's landmarks of
the same face are mapped back through that transform into chip pixels; the template is
their per-point mean. We fit on LFW View-1 *training* people (``peopleDevTrain.txt``),
so none of the fit is tuned on the images that LFW View-2 tests in the same fold.

Run: ``python -m trainer.align_template --data ../shared/data/lfw [--limit 3000]``.
Needs the ``reference`` extra (dlib).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from vigil.config import DetectorConfig
from vigil.errors import DatasetError
from vigil.image import load_image
from vigil.models.mtcnn_detector import MtcnnDetector

logger = logging.getLogger(__name__)


def image_to_dlib_chip(details: object) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float]:
    """Return ``(C, R, k)`` of dlib's chip→image map for a ``dlib.chip_details``."""
    rect = details.rect  # type: ignore[attr-defined]
    centre = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
    theta = float(details.angle)  # type: ignore[attr-defined]
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    scale = (rect.width() - 1) / 149.0
    return centre, rotation, scale


def fit_template(image_paths: list[Path]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], int]:
    """Mean and standard deviation of MTCNN landmarks in dlib chip pixels, and the face count used."""
    import dlib
    import face_recognition_models

    hog = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    detector = MtcnnDetector(DetectorConfig(backend="mtcnn"))
    points_in_chip = []
    for path in tqdm(image_paths, desc="fitting template", unit="img"):
        image = load_image(path)
        rects = hog(image, 1)
        faces = detector.detect([image])[0]
        if len(rects) != 1 or len(faces) == 0:
            continue  # ambiguous: skip rather than guess which face is which
        details = dlib.get_face_chip_details(predictor(image, rects[0]), 150, 0.25)
        centre, rotation, scale = image_to_dlib_chip(details)
        box_centres = (faces.boxes_xyxy[:, :2] + faces.boxes_xyxy[:, 2:]) / 2
        nearest = int(np.argmin(np.linalg.norm(box_centres - centre, axis=1)))
        landmarks = faces.landmarks[nearest].astype(np.float64)
        chip = (landmarks - centre) @ rotation / scale + 74.5  # R⁻¹ = Rᵀ, applied to row vectors
        if np.all((chip > 0) & (chip < 150)):
            points_in_chip.append(chip)
    if not points_in_chip:
        raise DatasetError("no face was found by both dlib and MTCNN; check the image folder")
    stacked = np.stack(points_in_chip)
    return stacked.mean(axis=0), stacked.std(axis=0), len(stacked)


def training_images(lfw_dir: Path, limit: int) -> list[Path]:
    """The first ``limit`` images of LFW View-1's training people (``peopleDevTrain.txt``).

    Raises:
        DatasetError: ``peopleDevTrain.txt`` is not in ``lfw_dir``.
    """
    people_file = lfw_dir / "peopleDevTrain.txt"
    if not people_file.is_file():
        raise DatasetError(f"{people_file} not found; pass --data pointing at the LFW folder")
    paths: list[Path] = []
    for line in people_file.read_text().splitlines()[1:]:
        name, count = line.split()
        paths += [
            lfw_dir / "lfw-deepfunneled" / name / f"{name}_{i:04d}.jpg" for i in range(1, int(count) + 1)
        ]
    return paths[:limit]


if __name__ == "__main__":
    from vigil.cli.train import align_template_main  # the command line lives in vigil.cli

    raise SystemExit(align_template_main())
