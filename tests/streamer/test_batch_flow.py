"""Batch mode's flow control: files read as fast as the workers keep up, never faster.

Readers of files played ``--as-fast-as-possible`` (``realtime: false``) wait for room on the
bus instead of trimming frames nobody has analysed, so every frame and every file's end
marker reaches a worker; the bus's backlog is counted from the consumer group's counters,
without reading the frames' JPEGs. Real readers (``feed_camera`` on the shared clip) and
real Redis servers (``backend``: the embedded 6.2 one and the machine's 7.x one).
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from typing import Any

import numpy as np
import pytest

from streamer.bus import FrameBus
from streamer.feed import SOURCES_KEY, feed_camera
from tests.conftest import DEFAULT_SERVER_URL, RedisBackend, require, stop_embedded
from tests.streamer.conftest import CLIP, make_camera
from tests.streamer.test_bus import make_bus, make_image
from vigil.config import Settings
from vigil.config.redis import RedisConfig
from vigil.config.streamer import BusConfig, StreamerConfig
from vigil.streams import connect_frames_redis

# The clip sampled at 5 frames/s: 9.14 s of video.
CLIP_SAMPLED_FRAMES = 46
# A worker much slower than a reader that decodes the clip as fast as it can.
WORKER_S_PER_FRAME = 0.02
WAIT_S = 60.0


def bus_settings(settings: Settings, backend: RedisBackend, max_frames: int) -> Settings:
    """Settings on the backend's server, with a small bus in the backend's namespace."""
    redis_config = RedisConfig(
        url=None if backend.kind == "embedded" else os.environ.get("REDIS_URL", DEFAULT_SERVER_URL)
    )
    bus = BusConfig(
        stream=f"{backend.namespace}:frames",
        faces_stream=f"{backend.namespace}:faces",
        max_frames=max_frames,
    )
    return settings.model_copy(
        update={"redis": redis_config, "home": backend.home, "streamer": StreamerConfig(bus=bus)}
    )


class SlowWorker:
    """Reads the bus as a worker does, slowly, acknowledging as a worker does; records what it got."""

    def __init__(self, bus: FrameBus) -> None:
        self.bus = bus
        self.frames: dict[str, list[int]] = defaultdict(list)
        self.ends: dict[str, int] = {}
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slow-worker", daemon=True)

    def __enter__(self) -> SlowWorker:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self.stop.is_set():
            frames = self.bus.read("slow-worker", count=2, block_ms=100)
            time.sleep(WORKER_S_PER_FRAME * len(frames))
            for frame in frames:
                if frame.end_of_stream:
                    self.ends[frame.camera] = frame.number
                else:
                    self.frames[frame.camera].append(frame.number)
            with self.bus._client.pipeline(transaction=True) as pipe:
                self.bus.ack_in(pipe, [frame.entry_id for frame in frames])
                pipe.execute()


def test_files_read_as_fast_as_possible_lose_no_frame_and_no_end_marker(
    backend: RedisBackend, settings: Settings
) -> None:
    # given two files read as fast as possible onto a bus of 8 frames, and a slow worker
    config = bus_settings(settings, backend, max_frames=8)
    frames_client = connect_frames_redis(config.redis, config.home)  # where readers put frames
    bus = FrameBus(frames_client, config.streamer.bus)
    bus.ensure_group()
    names = [f"one-{backend.namespace}", f"two-{backend.namespace}"]  # vigil:sources is shared
    cameras = [make_camera(require(CLIP), name=name, realtime=False) for name in names]
    stop = threading.Event()
    readers = [
        threading.Thread(target=feed_camera, args=(config, camera, stop), daemon=True) for camera in cameras
    ]
    # when both readers run to the end of their file
    with SlowWorker(bus) as worker:
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while len(worker.ends) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    stop.set()
    backend.client().hdel(SOURCES_KEY, *names)
    if backend.kind == "embedded":
        stop_embedded(frames_client)
    # then the worker got every frame of both files, in order, and both end markers
    assert worker.ends == dict.fromkeys(names, CLIP_SAMPLED_FRAMES), f"end markers lost: {worker.ends}"
    for name in names:
        assert worker.frames[name] == list(range(CLIP_SAMPLED_FRAMES)), f"{name}: frames trimmed"


def test_a_batch_jobs_frames_left_by_a_dead_worker_are_analysed_however_old(
    backend: RedisBackend, settings: Settings
) -> None:
    # given a file read as fast as possible by a real reader, and a worker that took all its
    # frames and died (the fault benchmark: a worker killed, or Redis lost, while the reader
    # had read far ahead), so that every frame is older than stale_after_s when re-claimed
    config = bus_settings(settings, backend, max_frames=64)
    bus_config = config.streamer.bus.model_copy(update={"stale_after_s": 0.05, "claim_idle_ms": 100})
    config = config.model_copy(update={"streamer": config.streamer.model_copy(update={"bus": bus_config})})
    frames_client = connect_frames_redis(config.redis, config.home)
    bus = FrameBus(frames_client, bus_config)
    bus.ensure_group()
    name = f"batch-{backend.namespace}"
    stop = threading.Event()
    reader = threading.Thread(
        target=feed_camera,
        args=(config, make_camera(require(CLIP), name=name, realtime=False), stop),
        daemon=True,
    )
    reader.start()
    taken: list[Any] = []
    quiet_since = time.monotonic()  # the reader waits for room once the dead worker holds enough
    while time.monotonic() - quiet_since < 2.0:
        got = bus.read("dead-worker", count=1000, block_ms=100)
        if got:
            taken, quiet_since = taken + got, time.monotonic()
    stop.set()
    reader.join(WAIT_S)
    assert len(taken) >= 8, "the reader must have sent frames"
    time.sleep(0.3)
    # when another worker re-claims them
    fresh, stale = bus.reclaim("worker-2", count=1000)
    backend.client().hdel(SOURCES_KEY, name)
    if backend.kind == "embedded":
        stop_embedded(frames_client)
    # then every frame is analysed, none dropped as stale: a batch job waits for its workers
    assert stale == [], f"{len(stale)} frames of a batch job dropped as stale"
    assert sorted(f.number for f in fresh) == sorted(f.number for f in taken)


def test_backlog_reads_counters_not_frames(backend: RedisBackend) -> None:
    if backend.kind != "embedded":
        pytest.skip("bytes sent are measured on the embedded server, which only this test uses")
    # given 100 noisy frames (big JPEGs) waiting on the bus, 20 of them taken by a worker
    bus = make_bus(backend, max_frames=1000)
    rng = np.random.default_rng(0)
    for number in range(100):
        bus.publish("door", number, float(number), rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    bus.read("worker-1", count=20, block_ms=None)
    # when the backlog is asked for
    sent_before = _net_output_bytes(bus)
    backlog = bus.backlog()
    sent = _net_output_bytes(bus) - sent_before
    # then it is right, and costs the server a reply of counters, not the frames (~1.5 MB)
    assert backlog == (80, 20)
    assert sent < 4096, f"backlog() made the server send {sent} bytes"


@pytest.mark.parametrize(
    ("published", "read", "acked", "expected"),
    [
        (5, 0, 0, (5, 0)),  # nothing read yet
        (5, 2, 1, (3, 1)),  # a worker took 2 and finished 1
        (12, 0, 0, (8, 0)),  # 4 trimmed before anyone read them: they no longer wait
        (12, 8, 8, (0, 0)),  # everything left was done
    ],
)
def test_backlog_counts_waiting_and_pending_frames(
    backend: RedisBackend, published: int, read: int, acked: int, expected: tuple[int, int]
) -> None:
    # given frames on a bus of 8, some read by a worker and some of those done
    bus = make_bus(backend, max_frames=8)
    for number in range(published):
        bus.publish("door", number, float(number), make_image(number))
    frames = bus.read("worker-1", count=read, block_ms=None) if read else []
    with bus._client.pipeline(transaction=True) as pipe:
        bus.ack_in(pipe, [frame.entry_id for frame in frames[:acked]])
        pipe.execute()
    # then the backlog says how many wait and how many are pending
    assert bus.backlog() == expected


def test_an_end_marker_trimmed_before_any_worker_took_it_is_sent_again(backend: RedisBackend) -> None:
    # given a file's end marker on a bus of 3, pushed out by a live camera's frames
    bus = make_bus(backend, max_frames=3)
    marker = bus.publish_end("file", 10)
    assert bus.end_delivered(marker) is None, "a waiting marker is neither delivered nor lost"
    for number in range(4):
        bus.publish("live", number, float(number), make_image(number))
    # then the bus says it was lost, and the reader sends it again
    assert bus.end_delivered(marker) is False
    again = bus.publish_end("file", 10)
    # when a worker takes it
    taken = bus.read("worker-1", count=10, block_ms=None)
    # then it is delivered
    assert [(f.camera, f.number) for f in taken if f.end_of_stream] == [("file", 10)]
    assert bus.end_delivered(again) is True


def _net_output_bytes(bus: FrameBus) -> int:
    stats: dict[str, Any] = bus._client.info("stats")
    return int(stats["total_net_output_bytes"])
