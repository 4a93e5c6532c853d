"""Shared fixtures: where the real test data lives, and an isolated VIGIL_HOME."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vigil.config import Settings, load_settings
from vigil.image import load_image
from vigil.models.pipeline import FacePipeline
from vigil.typing import ImageRGB

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PEOPLE = SHARED_DATA / "people" / "face_recognition"
LFW = SHARED_DATA / "lfw"


def require(path: Path) -> Path:
    """Skip the test, saying what is missing, unless ``path`` exists."""
    if not path.exists():
        pytest.skip(f"test data not found: {path} (the shared data folder sits beside the checkout)")
    return path


def people_image(name: str) -> ImageRGB:
    return load_image(require(PEOPLE / name))


@pytest.fixture(scope="session")
def vigil_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A VIGIL_HOME of the test session's own, so tests never touch the user's data."""
    return tmp_path_factory.mktemp("vigil_home")


@pytest.fixture(scope="session")
def settings(vigil_home: Path) -> Settings:
    return load_settings(environ={}).model_copy(update={"home": vigil_home})


@pytest.fixture(scope="session")
def pipeline(settings: Settings) -> Iterator[FacePipeline]:
    """One loaded pipeline for the whole session: loading the models takes seconds."""
    face_pipeline = FacePipeline.from_settings(settings)
    face_pipeline.load()
    yield face_pipeline
