"""Cameras from what a user names on the command line or in a request: URLs, files, webcams.

``vigil run clip.mp4 rtsp://door/stream 0`` and the settings that run it: each source becomes a
``CameraConfig`` named after its file, host or webcam index, and the run's options override the
configured ones.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vigil.config import CameraConfig, Settings
from vigil.errors import ConfigError, VigilError


def cameras_from_sources(sources: Sequence[str], fps: float | None, realtime: bool) -> list[CameraConfig]:
    """Camera configs for sources: named after the file, host or webcam index (unique names).

    Raises:
        VigilError: A source is neither a URL, a webcam index nor an existing file.
    """
    cameras: list[CameraConfig] = []
    for index, source in enumerate(sources):
        if "://" in source:
            base = (
                re.sub(r"[^A-Za-z0-9_.-]", "-", source.split("://", 1)[1].split("/", 1)[0]) or f"cam{index}"
            )
        elif source.isdigit():
            base = f"webcam{source}"
        else:
            path = Path(source)
            if not path.exists():
                raise VigilError(
                    f"{source} does not exist; pass a video file, a stream URL or a webcam index"
                )
            base = re.sub(r"[^A-Za-z0-9_.-]", "-", path.stem) or f"cam{index}"
            source = str(path.resolve())
        name = base
        suffix = 2
        while any(camera.name == name for camera in cameras):
            name, suffix = f"{base}-{suffix}", suffix + 1
        options: dict[str, Any] = {"name": name[:64], "source": source, "realtime": realtime}
        if fps is not None:
            options["fps"] = fps
        cameras.append(CameraConfig(**options))
    return cameras


def settings_for_run(
    settings: Settings,
    sources: Sequence[str] = (),
    *,
    fps: float | None = None,
    as_fast_as_possible: bool = False,
    workers: int | None = None,
    metrics_port: int | None = None,
) -> Settings:
    """``settings`` with a run's options: its sources replace the configured cameras.

    Args:
        settings: The configured settings.
        sources: URLs, files or webcam indexes; none keeps ``streamer.cameras``.
        fps: Frames per second to analyse per camera (None: the camera's own).
        as_fast_as_possible: Read files as fast as the workers keep up (not in real time).
        workers: Worker processes (None: ``streamer.workers.count``).
        metrics_port: Port of ``/metrics`` (None: ``streamer.metrics.port``).

    Raises:
        ConfigError: The options make invalid settings (e.g. a negative fps).
        VigilError: A source does not exist.
    """
    streamer = settings.streamer
    try:
        if sources:
            streamer = streamer.model_copy(
                update={"cameras": cameras_from_sources(sources, fps, not as_fast_as_possible)}
            )
        elif fps is not None or as_fast_as_possible:
            updates: dict[str, Any] = {}
            if fps is not None:
                updates["fps"] = fps
            if as_fast_as_possible:
                updates["realtime"] = False
            cameras = [camera.model_copy(update=updates) for camera in streamer.cameras]
            streamer = streamer.model_copy(update={"cameras": cameras})
        if workers is not None:
            streamer = streamer.model_copy(
                update={"workers": streamer.workers.model_copy(update={"count": workers})}
            )
        if metrics_port is not None:
            streamer = streamer.model_copy(
                update={"metrics": streamer.metrics.model_copy(update={"port": metrics_port})}
            )
        # model_copy skips validation: validate the result once, as the config file would be.
        return Settings.model_validate({**settings.model_dump(), "streamer": streamer.model_dump()})
    except ValueError as exc:
        raise ConfigError(f"invalid run options: {exc}".splitlines()[0]) from None
