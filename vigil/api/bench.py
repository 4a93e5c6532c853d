"""``vigil bench api``: identify requests per second and latency, and live events delivered per second.

The real server (``vigil serve``) runs in a process of its own on a fresh data directory with
its embedded Redis, so the clients, threads of this process, never share its interpreter.
Two people are enrolled through the API from the photos that ship in PyPI packages
(``vigil.samples``); the identify requests upload ``grace_hopper.jpg``.

- **Identify**: ``clients`` threads each send identify requests back to back for
  ``duration_s``, after a warm-up. A ``503 busy`` (more than ``IDENTIFY_QUEUE`` images already
  waiting) is counted and retried after ``BUSY_BACKOFF_S``, as a client should; latency is
  from the first send to the answer, retries included.
- **Live**: ``subscribers`` Server-Sent-Event streams are opened, then ``events`` events are
  published to the events stream as fast as Redis takes them; the rate is every event
  delivered to every subscriber over the time from the first publication to the last delivery,
  and latency is publication to arrival.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vigil.config import Settings
from vigil.errors import VigilError

if TYPE_CHECKING:
    import redis

    from streamer.events import Event

logger = logging.getLogger(__name__)

BUSY_BACKOFF_S = 0.05
WARMUP_REQUESTS = 3
START_TIMEOUT_S = 120.0
PHOTO_NAMES = {"Eileen Collins": "astronaut.jpg", "Grace Hopper": "grace_hopper.jpg"}


@dataclass(frozen=True)
class IdentifyRun:
    """Identify requests with ``clients`` concurrent clients."""

    clients: int
    requests: int
    requests_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    busy_answers: int
    errors: int


@dataclass(frozen=True)
class LiveRun:
    """Events delivered to ``subscribers`` live streams."""

    subscribers: int
    events: int
    delivered: int
    duplicates: int
    events_per_s: float
    p50_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class ApiBenchResult:
    identify: list[IdentifyRun]
    live: LiveRun
    cpu: str
    cores: int
    duration_s: float

    def to_dict(self) -> dict[str, object]:
        return {
            "identify": [asdict(run) for run in self.identify],
            "live": asdict(self.live),
            "machine": {"cpu": self.cpu, "cores": self.cores},
            "duration_s": self.duration_s,
        }

    def to_markdown(self) -> str:
        lines = [
            "# API load (`vigil bench api`)",
            "",
            f"Machine: {self.cpu}, {self.cores} cores. The server (`vigil serve`) in its own process;",
            f"clients are threads of the bench, {self.duration_s:.0f} s per row, after a warm-up.",
            "",
            "| Identify clients | Requests | Requests/s | p50 ms | p99 ms | 503 busy (retried) | Errors |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for run in self.identify:
            lines.append(
                f"| {run.clients} | {run.requests} | {run.requests_per_s:.2f} | {_ms(run.p50_ms, 0)} | "
                f"{_ms(run.p99_ms, 0)} | {run.busy_answers} | {run.errors} |"
            )
        live = self.live
        lines += [
            "",
            "| Live subscribers | Events published | Delivered | Duplicates | Events/s delivered "
            "| p50 ms | p99 ms |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {live.subscribers} | {live.events} | {live.delivered} | {live.duplicates} "
            f"| {live.events_per_s:.0f} | {_ms(live.p50_ms, 1)} | {_ms(live.p99_ms, 1)} |",
            "",
        ]
        return "\n".join(lines)


def run_api_bench(
    settings: Settings,
    *,
    clients: list[int],
    duration_s: float,
    subscribers: int,
    events: int,
) -> ApiBenchResult:
    """Start a server on a fresh data directory, enrol the sample people, and measure.

    Raises:
        VigilError: The server did not start, or enrolment through the API failed.
    """
    from streamer.bench_setup import temporary_home
    from streamer.rtsp_clip_server import free_port
    from vigil.api.keys import ApiRole, KeyStore
    from vigil.machine import cpu_model

    with temporary_home(settings) as (home_settings, client):
        token = KeyStore(client).create("bench", ApiRole.ADMIN)[1]
        port = free_port()
        with _server(home_settings.home, port) as address:
            photos = _sample_jpegs()
            for name, jpeg in photos.items():
                _enrol(address, token, name, PHOTO_NAMES[name], jpeg)
            probe = photos["Grace Hopper"]
            for _ in range(WARMUP_REQUESTS):
                _identify(address, token, probe)
            identify = [_identify_run(address, token, probe, count, duration_s) for count in clients]
            live = _live_run(address, token, client, home_settings, subscribers, events)
    return ApiBenchResult(identify, live, cpu_model(), os.cpu_count() or 1, duration_s)


@contextlib.contextmanager
def _server(home: Path, port: int) -> Iterator[tuple[str, int]]:
    """``vigil serve`` on ``home`` in a process of its own; its address once it answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env["VIGIL_HOME"] = str(home)
    command = [sys.executable, "-m", "vigil", "serve", "--host", "127.0.0.1", "--port", str(port)]
    # Its log goes to a file: a pipe nobody reads while it runs could fill and stall the server.
    with tempfile.TemporaryFile(mode="w+") as log:
        server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)
        address = ("127.0.0.1", port)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not _answers(address):
                if server.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise VigilError(f"the API server did not start: {log.read()[-500:]}")
                time.sleep(0.1)
            yield address
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()


def _answers(address: tuple[str, int]) -> bool:
    try:
        status, _ = _request(address, "GET", "/api/v1/health", {})
    except OSError:
        return False
    return status == 200


def _request(
    address: tuple[str, int], method: str, path: str, headers: dict[str, str], body: bytes | None = None
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(*address, timeout=120)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _multipart(fields: list[tuple[str, str | None, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body of (field, file name or None, content); the body and its type."""
    boundary = uuid.uuid4().hex
    parts = []
    for field, filename, content in fields:
        disposition = f'form-data; name="{field}"' + (f'; filename="{filename}"' if filename else "")
        kind = "Content-Type: image/jpeg\r\n" if filename else ""
        parts.append(
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n{kind}\r\n".encode() + content + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _sample_jpegs() -> dict[str, bytes]:
    import cv2

    from vigil.samples import sample_images

    jpegs = {}
    for name, image in sample_images().items():
        ok, encoded = cv2.imencode(
            ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92]
        )
        if not ok:
            raise VigilError(f"could not encode the sample photo of {name}")
        jpegs[name] = encoded.tobytes()
    return jpegs


def _enrol(address: tuple[str, int], token: str, name: str, filename: str, jpeg: bytes) -> None:
    body, kind = _multipart([("name", None, name.encode()), ("photos", filename, jpeg)])
    status, answer = _request(
        address, "POST", "/api/v1/people", {"X-API-Key": token, "Content-Type": kind}, body
    )
    if status != 201:
        raise VigilError(f"enrolling {name} through the API failed ({status}): {answer[:300]!r}")


def _identify(address: tuple[str, int], token: str, jpeg: bytes) -> tuple[int, float, int]:
    """One identify request, retried while the server is busy: (status, seconds, busy answers)."""
    body, kind = _multipart([("image", "probe.jpg", jpeg)])
    headers = {"X-API-Key": token, "Content-Type": kind}
    started, busy = time.perf_counter(), 0
    while True:
        status, _ = _request(address, "POST", "/api/v1/identify", headers, body)
        if status != 503:
            return status, time.perf_counter() - started, busy
        busy += 1
        time.sleep(BUSY_BACKOFF_S)


def _identify_run(
    address: tuple[str, int], token: str, jpeg: bytes, clients: int, duration_s: float
) -> IdentifyRun:
    latencies: list[float] = []
    counts = {"busy": 0, "errors": 0}
    lock = threading.Lock()
    deadline = time.perf_counter() + duration_s

    def client() -> None:
        while time.perf_counter() < deadline:
            try:
                status, seconds, busy = _identify(address, token, jpeg)
            except OSError:
                status, seconds, busy = 0, 0.0, 0
            with lock:
                counts["busy"] += busy
                if status == 200:
                    latencies.append(seconds)
                else:
                    counts["errors"] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    from streamer.bench_stream import percentiles

    spread = percentiles([seconds * 1000 for seconds in latencies])
    return IdentifyRun(
        clients=clients,
        requests=len(latencies),
        requests_per_s=round(len(latencies) / elapsed, 3),
        p50_ms=spread.p50_ms,
        p99_ms=spread.p99_ms,
        busy_answers=counts["busy"],
        errors=counts["errors"],
    )


def _live_run(
    address: tuple[str, int],
    token: str,
    client: redis.Redis,
    settings: Settings,
    subscribers: int,
    events: int,
) -> LiveRun:
    from streamer.events import EventPublisher

    arrivals: list[list[tuple[str, float]]] = [[] for _ in range(subscribers)]
    ready = threading.Barrier(subscribers + 1)
    connections: list[http.client.HTTPConnection] = []

    def subscribe(index: int) -> None:
        connection = http.client.HTTPConnection(*address, timeout=120)
        connections.append(connection)
        connection.request("GET", "/api/v1/events/live", headers={"X-API-Key": token})
        response = connection.getresponse()
        first = True
        while len(arrivals[index]) < events:
            line = response.readline()
            if not line:
                break
            if first and line.startswith(b": subscribed"):
                first = False
                try:
                    ready.wait(timeout=60)
                except threading.BrokenBarrierError:
                    return  # another stream did not open: the run is reported as failed
            elif line.startswith(b"data: "):
                arrivals[index].append((json.loads(line[6:])["event_id"], time.time()))

    threads = [threading.Thread(target=subscribe, args=(i,), daemon=True) for i in range(subscribers)]
    for thread in threads:
        thread.start()
    try:
        ready.wait(timeout=60)
    except threading.BrokenBarrierError:
        raise VigilError(f"not all {subscribers} live streams opened within 60 s") from None
    publisher = EventPublisher(client, settings.streamer.events)
    published: dict[str, float] = {}
    started = time.time()
    for number in range(events):
        event = _bench_event(number)
        published[event.event_id] = time.time()
        publisher.publish(event)
    for thread in threads:
        thread.join(timeout=120)
    finished = max((times[-1][1] for times in arrivals if times), default=time.time())
    for connection in connections:
        connection.close()
    delays = [arrived - published[event_id] for times in arrivals for event_id, arrived in times]
    delivered = len(delays)
    from streamer.bench_stream import percentiles

    spread = percentiles([seconds * 1000 for seconds in delays])
    duplicates = sum(len(times) - len({event_id for event_id, _ in times}) for times in arrivals)
    return LiveRun(
        subscribers=subscribers,
        events=events,
        delivered=delivered,
        duplicates=duplicates,
        events_per_s=round(delivered / max(finished - started, 1e-9), 1),
        p50_ms=spread.p50_ms,
        p99_ms=spread.p99_ms,
    )


def _bench_event(number: int) -> Event:
    from streamer.events import Event, EventType, iso_time

    return Event(
        type=EventType.UNKNOWN,
        captured_at=iso_time(time.time()),
        camera="bench",
        track_id=f"bench-{number}",
        identity_id=None,
        name=None,
        score=None,
        threshold=0.5,
        margin=0.0,
        box=[0.0, 0.0, 10.0, 10.0],
        landmarks=[[2.0, 3.0], [8.0, 3.0], [5.0, 5.0], [3.0, 8.0], [7.0, 8.0]],
        frame=number,
        embedder_version="bench",
        calibration="bench",
        latency_ms=0.0,
        track_frames=1,
    )


def _ms(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"  # None: nothing was measured
