"""One typed settings tree for all of Vigil.

Sources, highest priority first: environment variables ``VIGIL_*``
(nested with ``__``, e.g. ``VIGIL_DETECTOR__MIN_FACE_SIZE_PX=40``), the YAML file
(``--config`` or ``VIGIL_CONFIG``, passed in as keyword arguments), then the
defaults below. The conventional ``REDIS_URL`` sets ``redis.url`` unless
``VIGIL_REDIS__URL`` does; like the other environment variables it overrides the file.
Every field is documented in ``docs/configuration.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import platformdirs
import yaml
from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)
from pydantic_settings.sources.utils import parse_env_vars

from vigil.config.aligner import AlignerConfig
from vigil.config.api import ApiConfig
from vigil.config.bridges import BridgesConfig
from vigil.config.detector import DetectorConfig
from vigil.config.embedder import EmbedderConfig
from vigil.config.indexer import IndexerConfig
from vigil.config.redis import RedisConfig
from vigil.config.streamer import CameraConfig, StreamerConfig
from vigil.errors import ConfigError

__all__ = [
    "AlignerConfig",
    "CameraConfig",
    "DetectorConfig",
    "EmbedderConfig",
    "IndexerConfig",
    "RedisConfig",
    "Settings",
    "StreamerConfig",
    "load_settings",
]


# The environment ``load_settings`` was given explicitly, for the settings source to read
# instead of ``os.environ`` (pydantic-settings takes no mapping of its own).
_EXPLICIT_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("vigil_explicit_environ", default=None)


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir("vigil", appauthor=False))


class Settings(BaseSettings):
    """Vigil's settings."""

    model_config = SettingsConfigDict(
        env_prefix="VIGIL_", env_nested_delimiter="__", extra="forbid", validate_assignment=True
    )

    home: Path = Field(
        default_factory=_default_home,
        description="Data directory holding all state (gallery, Redis data, caches, calibrations).",
    )
    models_dir: Path | None = Field(
        None,
        description=(
            "Where the YuNet and SFace ONNX files are (`vigil models install-pack` writes them); "
            "default `<python prefix>/share/vigil/models`, beside the installed packages."
        ),
    )
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    aligner: AlignerConfig = Field(default_factory=AlignerConfig)
    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig)
    indexer: IndexerConfig = Field(default_factory=IndexerConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    streamer: StreamerConfig = Field(default_factory=StreamerConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    bridges: BridgesConfig = Field(default_factory=BridgesConfig)

    @property
    def cache_dir(self) -> Path:
        """Where converted weights and embedding caches live (under ``home``)."""
        return self.home / "cache"

    @property
    def model_files_dir(self) -> Path:
        """``models_dir``, or its default when unset."""
        from vigil.models.model_files import default_models_dir

        return self.models_dir if self.models_dir is not None else default_models_dir()

    def redacted_json(self) -> str:
        """The settings as indented JSON with every password hidden (``vigil check-config``).

        Redis and camera URLs carry passwords (``redis://u:pw@host``, ``?password=``,
        ``rtsp://admin:pw@cam``); they are shown through ``vigil.redact.redact_url``.
        """
        import json

        from vigil.redact import redact_url

        shown = self.model_dump(mode="json")
        for key in ("url", "frames_url"):
            if shown["redis"][key] is not None:
                shown["redis"][key] = redact_url(shown["redis"][key])
        for camera in shown["streamer"]["cameras"]:
            camera["source"] = redact_url(camera["source"])
        return json.dumps(shown, indent=2)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives through init kwargs (see load_settings), below the environment.
        environ = _EXPLICIT_ENVIRON.get()
        if environ is not None:
            env_settings = _MappingEnvSource(settings_cls, environ)
        return env_settings, init_settings


class _MappingEnvSource(EnvSettingsSource):
    """``VIGIL_*`` variables read from a given mapping, so an explicit environment is the only one."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ  # before super().__init__, which loads the variables
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def load_settings(config_path: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Build the settings from a YAML file (optional) and the environment.

    Args:
        config_path: YAML file; when None, ``VIGIL_CONFIG`` names one, else none is read.
        environ: The environment to read ``VIGIL_*``, ``VIGIL_CONFIG`` and ``REDIS_URL`` from;
            when given, it is the only one (``os.environ`` is not read), so tests do not depend on
            the user's environment. Defaults to ``os.environ``.

    Raises:
        ConfigError: The file is missing, is not YAML, or a value is invalid. The message
            names the setting's path, e.g. ``detector.min_face_size_px``.
    """
    import os

    env = os.environ if environ is None else environ
    if config_path is None and env.get("VIGIL_CONFIG"):
        config_path = Path(env["VIGIL_CONFIG"])
    file_values: dict[str, Any] = {}
    if config_path is not None:
        file_values = _read_yaml(config_path)
    redis_url = env.get("REDIS_URL")
    if redis_url and "VIGIL_REDIS__URL" not in env:
        section = file_values.get("redis") or {}
        if isinstance(section, dict):  # anything else is left for validation to report
            file_values["redis"] = {**section, "url": redis_url}
    token = _EXPLICIT_ENVIRON.set(environ)
    try:
        return Settings(**file_values)
    except ValidationError as exc:
        text = config_path.read_text(encoding="utf-8") if config_path is not None else ""
        raise ConfigError(_describe(exc, config_path, text)) from None
    except SettingsError as exc:  # an environment variable that is not valid JSON for its field
        raise ConfigError(f"invalid VIGIL_* environment variable: {exc}") from None
    finally:
        _EXPLICIT_ENVIRON.reset(token)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}; check the path") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text; save it as UTF-8 YAML") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}; fix the syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, not {type(data).__name__}")
    bad_keys = [key for key in data if not isinstance(key, str)]
    if bad_keys:
        raise ConfigError(f"config file {path} has non-text setting names: {bad_keys[:3]}")
    return data


def _describe(exc: ValidationError, path: Path | None, yaml_text: str) -> str:
    source = f" in {path}" if path else ""
    problems = []
    for err in exc.errors():
        location = ".".join(str(part) for part in err["loc"])
        line = _yaml_line(yaml_text, err["loc"])
        problems.append(f"{location}{f' (line {line})' if line else ''}: {err['msg']}")
    return f"invalid configuration{source}: {'; '.join(problems)}"


def _yaml_line(yaml_text: str, location: tuple[int | str, ...]) -> int | None:
    """1-based line of the deepest YAML node on ``location`` (None when it is not in the file)."""
    try:
        node = yaml.compose(yaml_text) if yaml_text else None
    except yaml.YAMLError:
        return None
    line = None
    for part in location:
        if isinstance(node, yaml.MappingNode):
            match = next((value for key, value in node.value if key.value == str(part)), None)
            key_node = next((key for key, _ in node.value if key.value == str(part)), None)
            if match is None or key_node is None:
                break
            line, node = key_node.start_mark.line + 1, match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
