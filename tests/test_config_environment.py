"""An explicit ``environ`` is the only environment ``load_settings`` reads (defect 13 of issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.config import load_settings


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("VIGIL_HOME", "/tmp/from-the-process-environment"),  # the user's own data directory
        ("VIGIL_DETECTOR__MIN_FACE_SIZE_PX", "77"),  # a nested setting
        ("REDIS_URL", "redis://elsewhere:6379/0"),  # the conventional variable
    ],
)
def test_explicit_environ_ignores_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    # given a process environment that sets a value, and a YAML file that sets others
    monkeypatch.setenv(variable, value)
    config = tmp_path / "vigil.yaml"
    config.write_text("home: /tmp/elsewhere\ndetector:\n  min_face_size_px: 40\n")
    # when loaded with an explicit, empty environment
    settings = load_settings(config, environ={})
    # then only the file and the defaults count
    assert settings.home == Path("/tmp/elsewhere"), "VIGIL_HOME leaked from the process environment"
    assert settings.detector.min_face_size_px == 40, "a VIGIL_* variable leaked from the process"
    assert settings.redis.url is None, "REDIS_URL leaked from the process environment"


def test_explicit_environ_is_read(tmp_path: Path) -> None:
    # given VIGIL_* values passed explicitly
    environ = {"VIGIL_HOME": str(tmp_path), "VIGIL_DETECTOR__MIN_FACE_SIZE_PX": "60"}
    # when loaded
    settings = load_settings(environ=environ)
    # then they are used, nested ones included
    assert settings.home == tmp_path and settings.detector.min_face_size_px == 60
