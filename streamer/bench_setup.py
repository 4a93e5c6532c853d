"""What the streamer's benchmarks share: the clip and people, a throw-away home, machine load.

``vigil bench stream`` (one camera, against the face_recognition recipe) and ``vigil bench
cameras`` (many cameras on one worker, GPU when present) enrol the same people from
face_recognition's example photos into a temporary ``VIGIL_HOME`` with its own embedded
Redis, and decode the same clip once.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from vigil.config import Settings
from vigil.errors import DatasetError
from vigil.files import write_text_atomically
from vigil.typing import ImageRGB

if TYPE_CHECKING:
    import redis

    from indexer.identify import Identifier

logger = logging.getLogger(__name__)

DEFAULT_CLIP = Path("../shared/data/clips/hamilton.mp4")
DEFAULT_PEOPLE_DIR = Path("../shared/data/people/face_recognition")
PEOPLE: Mapping[str, str] = {
    "Lin-Manuel Miranda": "lin-manuel-miranda.png",
    "Barack Obama": "obama.jpg",
    "Joe Biden": "biden.jpg",
}
"""Who is enrolled, from which photo of the people folder (face_recognition's example photos)."""
_SERVER_STOP_S = 10.0


def check_data(clip: Path, people_dir: Path) -> dict[str, Path]:
    """The enrolment photos by name, once the clip and every photo are known to exist.

    Raises:
        DatasetError: Something is missing (one line, naming the option to pass).
    """
    if not clip.is_file():
        raise DatasetError(
            f"clip {clip} not found; pass --clip VIDEO (the benchmark is defined on hamilton.mp4)"
        )
    photos = {name: people_dir / file for name, file in PEOPLE.items()}
    missing = [path.name for path in photos.values() if not path.is_file()]
    if missing:
        raise DatasetError(
            f"{people_dir} lacks {', '.join(missing)}; pass --people FOLDER with face_recognition's "
            "example photos"
        )
    return photos


@contextlib.contextmanager
def temporary_home(settings: Settings) -> Iterator[tuple[Settings, redis.Redis]]:
    """The settings moved to a fresh temporary ``VIGIL_HOME``, with its embedded Redis running.

    On exit the server is stopped and the folder removed, whatever happened.

    Yields:
        The settings (``home`` replaced, ``redis.url`` unset) and a client of that server.

    Raises:
        RedisUnavailableError: The embedded server cannot start.
    """
    from vigil.streams import connect_redis

    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as folder:
        redis_config = settings.redis.model_copy(update={"url": None})
        moved = settings.model_copy(update={"home": Path(folder), "redis": redis_config})
        client = connect_redis(moved.redis, moved.home)
        try:
            yield moved, client
        finally:
            stop_embedded(client)


def enroll_people(identifier: Identifier, settings: Settings, photos: Mapping[str, Path]) -> None:
    """Enrol each person from their photo, as ``vigil enroll NAME PHOTO`` does.

    Raises:
        GalleryError: A photo holds no usable face.
    """
    from indexer.enroll import enroll_person

    for name, photo in photos.items():
        for warning in enroll_person(identifier, settings.indexer, name, [photo]).warnings:
            logger.warning("enrolling %s: %s", name, warning)


def decode_clip(clip: Path, frame_range: tuple[int, int] | None) -> list[ImageRGB]:
    """Frames ``[start, stop)`` of the clip (all when ``frame_range`` is None), decoded once, RGB.

    Raises:
        DatasetError: The range holds no frame.
        StreamError: The clip cannot be decoded.
    """
    from streamer.bench_recipe import video_frames

    start, stop = frame_range if frame_range is not None else (0, None)
    frames = list(itertools.islice(video_frames(clip, limit=stop), start, None))
    if not frames:
        raise DatasetError(f"{clip} has no frame in {frame_range}; pass a range inside the clip")
    return frames


def machine_busy_s() -> float | None:
    """CPU seconds the whole machine has spent busy (``/proc/stat``), or None where unreadable."""
    try:
        with open("/proc/stat", encoding="utf-8") as stat:
            ticks = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def stop_embedded(client: redis.Redis) -> None:
    """Stop the embedded server (SIGTERM: it exits at once) and remove its socket folder."""
    server_pid = int(getattr(client, "pid", 0) or 0)
    socket_dir = getattr(client, "redis_dir", None)
    client.close()
    if server_pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server_pid, signal.SIGTERM)
        deadline = time.monotonic() + _SERVER_STOP_S
        with contextlib.suppress(ProcessLookupError):
            while time.monotonic() < deadline:
                os.kill(server_pid, 0)  # raises once the server has exited
                time.sleep(0.02)
    if socket_dir:
        shutil.rmtree(socket_dir, ignore_errors=True)


def markdown_grid(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table, the first column left-aligned and the others right-aligned."""
    lines = ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in [header, *rows]]
    lines.insert(1, "| --- |" + " ---: |" * (len(header) - 1))
    return "\n".join(lines)


class BenchReport(Protocol):
    """A benchmark's result, as the JSON and Markdown reports it writes."""

    def to_dict(self) -> dict[str, object]: ...

    def to_markdown(self) -> str: ...


def write_reports(result: BenchReport, json_path: Path) -> Path:
    """Write the JSON report and the Markdown one beside it (``.md``), atomically; returns the latter."""
    write_text_atomically(json_path, json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n")
    markdown_path = json_path.with_suffix(".md")
    write_text_atomically(markdown_path, result.to_markdown())
    return markdown_path
