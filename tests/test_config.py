"""Settings: YAML, environment and validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.config import load_settings
from vigil.errors import ConfigError


def test_defaults_without_file_or_environment() -> None:
    settings = load_settings(environ={})
    assert settings.detector.min_face_size_px == 20
    assert (settings.detector.backend, settings.embedder.backend) == ("yunet", "sface")
    assert settings.detector.score_cutoff == 0.7  # YuNet's own default when min_score is unset
    assert settings.cache_dir == settings.home / "cache"


def test_yaml_values_are_read(tmp_path: Path) -> None:
    # given a YAML file setting two sections
    config = tmp_path / "vigil.yaml"
    config.write_text("home: /tmp/elsewhere\ndetector:\n  min_face_size_px: 40\nembedder:\n  batch_size: 8\n")
    # when loaded
    settings = load_settings(config, environ={})
    # then the values are used
    assert settings.home == Path("/tmp/elsewhere")
    assert settings.detector.min_face_size_px == 40 and settings.embedder.batch_size == 8


def test_environment_overrides_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "vigil.yaml"
    config.write_text("detector:\n  min_face_size_px: 40\n")
    monkeypatch.setenv("VIGIL_DETECTOR__MIN_FACE_SIZE_PX", "60")
    assert load_settings(config).detector.min_face_size_px == 60


def test_vigil_config_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "vigil.yaml"
    config.write_text("embedder:\n  flip_average: false\n")
    assert load_settings(environ={"VIGIL_CONFIG": str(config)}).embedder.flip_average is False


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        # a typo in a key is an error, not silently ignored
        ("detector:\n  min_face_size: 40\n", r"detector\.min_face_size \(line 2\): Extra inputs"),
        # a value out of range names its path
        (
            "detector:\n  min_face_size_px: 2\n",
            r"detector\.min_face_size_px \(line 2\): .*greater than or equal to 8",
        ),
        # an unknown backend lists the choices
        (
            "embedder:\n  batch_size: 8\n  backend: vgg\n",
            r"embedder\.backend \(line 3\): .*'dlib_resnet', 'sface' or 'facenet'",
        ),
        # broken YAML syntax says where
        ("detector: [unclosed\n", r"not valid YAML at line"),
        # a list where a mapping is expected
        ("- a\n- b\n", r"must hold a mapping"),
    ],
    ids=["typo", "range", "choice", "syntax", "not-a-mapping"],
)
def test_bad_config_raises_config_error(tmp_path: Path, yaml_text: str, message: str) -> None:
    config = tmp_path / "vigil.yaml"
    config.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message):
        load_settings(config, environ={})


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "nope.yaml", environ={})


def test_configuration_docs_are_current() -> None:
    # docs/configuration.md is generated from the field descriptions; regenerate with
    # `vigil check-config --docs > docs/configuration.md`
    from vigil.config.docs import render_markdown

    committed = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text(
        encoding="utf-8"
    )
    assert committed == render_markdown(), "docs/configuration.md is stale: regenerate it"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # latin-1 bytes that are not UTF-8
        (b"home: /tmp/caf\xe9\n", "not UTF-8"),
        # a number as a setting name
        (b"1: 2\n", "non-text setting names"),
        # a probability above 1
        (b"detector:\n  thresholds: [0.6, 0.7, 1.5]\n", r"detector\.thresholds\.2"),
    ],
    ids=["not-utf8", "numeric-key", "threshold-range"],
)
def test_more_bad_config_files(tmp_path: Path, content: bytes, message: str) -> None:
    config = tmp_path / "vigil.yaml"
    config.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_settings(config, environ={})


def test_malformed_environment_variable() -> None:
    with pytest.raises(ConfigError, match="environment variable"):
        load_settings(environ={"VIGIL_DETECTOR__THRESHOLDS": "[0.6"})
