"""The demo: the face core on two photos that ship inside PyPI packages.

scikit-image ships ``astronaut.png`` (Eileen Collins) and matplotlib ships
``grace_hopper.jpg``. The demo finds their faces, then shows each one again moved,
scaled, rotated and re-lit, and checks that the embeddings tell the two people apart.
No file outside the installed packages is needed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from vigil.config import Settings
from vigil.image import load_image
from vigil.models.pipeline import Face, FacePipeline
from vigil.typing import ImageRGB

logger = logging.getLogger(__name__)

# dlib's published decision rule for its ResNet: same person when Euclidean distance < 0.6.
DLIB_SAME_PERSON_DISTANCE = 0.6


@dataclass(frozen=True)
class DemoFace:
    """One face the demo found."""

    person: str
    view: str
    box_xyxy: tuple[int, int, int, int]
    score: float
    embedding: np.ndarray


@dataclass(frozen=True)
class DemoComparison:
    """Distance between a re-shot view and each enrolled original."""

    person: str
    view: str
    distances: dict[str, float]
    best_match: str | None


@dataclass(frozen=True)
class DemoReport:
    faces: list[DemoFace]
    comparisons: list[DemoComparison]
    load_seconds: float
    run_seconds: float

    @property
    def all_correct(self) -> bool:
        return all(c.best_match == c.person for c in self.comparisons)


def sample_images() -> dict[str, ImageRGB]:
    """The two photos that ship with scikit-image and matplotlib, by person name."""
    import matplotlib.cbook
    import skimage.data

    # skimage.data ships without annotations; name the array type it returns.
    astronaut: Callable[[], ImageRGB] = skimage.data.astronaut
    hopper = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    return {
        "Eileen Collins": np.ascontiguousarray(astronaut()),
        "Grace Hopper": load_image(hopper),
    }


def altered_views(image: ImageRGB) -> dict[str, ImageRGB]:
    """The same photo moved, scaled, rotated and re-lit, on a larger grey canvas."""
    height, width = image.shape[:2]
    canvas_size = (int(width * 1.4), int(height * 1.4))

    def place(
        angle_deg: float, scale: float, shift: tuple[float, float], gain: float, bias: float
    ) -> ImageRGB:
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle_deg, scale)
        matrix[:, 2] += np.array(shift) + (np.array(canvas_size) - np.array([width, height])) / 2
        moved = cv2.warpAffine(image, matrix, canvas_size, borderValue=(128, 128, 128))
        relit: npt.NDArray[np.float32] = np.clip(moved.astype(np.float32) * gain + bias, 0, 255)
        return relit.astype(np.uint8)

    return {
        "rotated 12° and shifted": place(12, 1.0, (60, -40), 1.0, 0),
        "scaled to 60% and darkened": place(0, 0.6, (-80, 30), 0.55, 0),
        "rotated -8°, scaled 130%, brightened": place(-8, 1.3, (0, 0), 1.15, 35),
    }


def run_demo(settings: Settings) -> DemoReport:
    """Enrol each person from the original photo, then match every altered view."""
    pipeline = FacePipeline.from_settings(settings)
    started = time.monotonic()
    pipeline.load()
    loaded = time.monotonic()

    originals = sample_images()
    faces: list[DemoFace] = []
    enrolled: dict[str, np.ndarray] = {}
    for person, image in originals.items():
        face = pipeline.central_face(image)
        if face is None:
            logger.warning("no face found in the sample photo of %s", person)
            continue
        enrolled[person] = face.embedding
        faces.append(_demo_face(person, "original", face))

    comparisons: list[DemoComparison] = []
    for person, image in originals.items():
        for view, altered in altered_views(image).items():
            face = pipeline.central_face(altered)
            if face is None:
                comparisons.append(DemoComparison(person, view, {}, None))
                continue
            faces.append(_demo_face(person, view, face))
            distances = {name: float(np.linalg.norm(face.embedding - ref)) for name, ref in enrolled.items()}
            best = min(distances, key=lambda name: distances[name])
            comparisons.append(
                DemoComparison(
                    person, view, distances, best if distances[best] < DLIB_SAME_PERSON_DISTANCE else None
                )
            )
    return DemoReport(faces, comparisons, loaded - started, time.monotonic() - loaded)


def _demo_face(person: str, view: str, face: Face) -> DemoFace:
    x1, y1, x2, y2 = (round(float(v)) for v in face.box_xyxy)
    return DemoFace(person, view, (x1, y1, x2, y2), face.score, face.embedding)
