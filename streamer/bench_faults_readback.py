"""What ``vigil bench faults`` reads back from a pass: stream entries, events and the service's logs.

``streamer.bench_faults`` runs the service and injects the faults; these functions read what
the service wrote (on Redis and in its log) without touching it.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

from streamer.bench_faults_report import PassRun, Visit
from vigil.config.streamer import EventsConfig
from vigil.errors import MalformedEntryError, RedisUnavailableError

if TYPE_CHECKING:
    import redis

POISON_FIELD = b"vigil_bench_poison"
"""Marks the entries the benchmark poisoned a stream with, so it never counts them as the service's."""
_LOG_TIME_FORMAT = "%Y-%m-%d %H:%M:%S,%f"
_STALE_LINE = re.compile(r"dropped (\d+) stale frames")


def next_entry_at(client: redis.Redis, stream: str, since: float) -> float | None:
    """Unix time of the first entry the service wrote to ``stream`` after ``since`` (poison skipped)."""
    from vigil.streams import StreamEntry

    try:
        entries = cast(list[StreamEntry], client.xrange(stream, min=f"{int(since * 1000) + 1}-0", count=50))
    except (RedisUnavailableError, OSError):
        return None
    for raw_id, fields in entries:
        if POISON_FIELD not in fields:
            return int(raw_id.split(b"-")[0]) / 1000
    return None


def camera_results(
    client: redis.Redis, stream: str, camera: str, since: float, until: float | None = None
) -> tuple[list[float], bool]:
    """``camera``'s results on the results ``stream`` of frames read after ``since``, written
    before ``until``: a result written after ``since`` for a frame read earlier (a backlog) is
    not one of them.

    Returns:
        The Unix times its frame results were written, and whether its end-of-stream result is
        among them.
    """
    from streamer.analysis import FrameResult
    from vigil.streams import StreamEntry

    upper = "+" if until is None else f"{int(until * 1000)}-0"
    entries = cast(list[StreamEntry], client.xrange(stream, min=f"{int(since * 1000) + 1}-0", max=upper))
    times, ended = [], False
    for raw_id, fields in entries:
        with contextlib.suppress(MalformedEntryError):
            result = FrameResult.from_fields(fields)
            if result.camera == camera and not result.read_at < since:  # NaN (not known): kept
                ended = ended or result.end_of_stream
                if not result.end_of_stream:
                    times.append(int(raw_id.split(b"-")[0]) / 1000)
    return times, ended


def collect_pass(
    client: redis.Redis,
    events: EventsConfig,
    log_paths: Sequence[Path],
    index: int,
    started: float,
    first: float,
    seconds: float,
) -> PassRun:
    """The pass's events (from ``started`` on) and what its logs say of restarts and stale frames."""
    from streamer.events import EventType, read_events

    visits, ended, ids = [], set(), Counter[str]()
    low, last = int(started * 1000), started
    for stream_id, event in read_events(client, events, since=f"{low}-0"):
        ids[event.event_id] += 1
        last = max(last, int(stream_id.split("-")[0]) / 1000)
        if event.type is EventType.TRACK_ENDED:
            ended.add(event.track_id)
        else:
            visits.append(Visit(event.camera, event.type.value, event.name, event.track_id))
    lines = [line for path in log_paths for line in path.read_text(errors="replace").splitlines()]
    restarts = sum("restarting it in" in line for line in lines)
    restarts += len(log_paths) - 1  # the supervisor, started again
    stale = sum(int(match[1]) for line in lines if (match := _STALE_LINE.search(line)))
    return PassRun(index, seconds, max(last - first, 0.0), visits, ended, ids, restarts, stale)


def started_lines(log_path: Path) -> Iterator[tuple[float, str, int]]:
    """``(unix time, child name, pid)`` of each "started NAME (pid N)" line of a supervisor's log."""
    with contextlib.suppress(FileNotFoundError):
        for line in log_path.read_text(errors="replace").splitlines():
            marker = " streamer.service: started "
            if marker not in line or " (pid " not in line:
                continue
            when = datetime.strptime(line[:23], _LOG_TIME_FORMAT).timestamp()
            name, _, rest = line.split(marker, 1)[1].partition(" (pid ")
            with contextlib.suppress(ValueError):
                yield when, name, int(rest.rstrip(")"))
