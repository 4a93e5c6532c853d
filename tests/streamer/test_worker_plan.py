"""How many workers start, on how many threads, and readers held until the workers are ready."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from streamer.service import Supervisor
from streamer.worker import AUTO_CPU_WORKERS_MAX, WORKERS_KEY, plan_workers, ready_workers
from tests.conftest import stop_embedded
from tests.streamer.conftest import make_camera
from vigil.config import RedisConfig, Settings
from vigil.streams import connect_redis

CORES = len(os.sched_getaffinity(0))


def with_workers(settings: Settings, **workers: object) -> Settings:
    """``settings`` on the CPU with ``streamer.workers`` fields replaced."""
    streamer = settings.streamer
    config = streamer.workers.model_copy(update=workers)
    detector = settings.detector.model_copy(update={"device": "cpu"})
    return settings.model_copy(
        update={"detector": detector, "streamer": streamer.model_copy(update={"workers": config})}
    )


@pytest.mark.parametrize(
    ("count", "threads", "expected"),
    [
        (0, 0, (min(CORES, AUTO_CPU_WORKERS_MAX), max(1, CORES // min(CORES, AUTO_CPU_WORKERS_MAX)))),
        (1, 0, (1, CORES)),
        (3, 0, (3, max(1, CORES // 3))),
        (2, 5, (2, 5)),
    ],
    ids=["auto", "one-worker-every-core", "cores-shared", "both-given"],
)
def test_workers_share_out_the_cores_on_a_cpu(
    settings: Settings, count: int, threads: int, expected: tuple[int, int]
) -> None:
    # given the models on the CPU and a worker count and thread count (0: auto)
    planned = plan_workers(with_workers(settings, count=count, torch_threads=threads)).streamer.workers
    # then auto picks one worker per core (capped), and the cores are shared out among the workers
    assert (planned.count, planned.torch_threads) == expected
    # and planning again changes nothing
    again = plan_workers(with_workers(settings, count=planned.count, torch_threads=planned.torch_threads))
    assert (again.streamer.workers.count, again.streamer.workers.torch_threads) == expected


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[redis.Redis]:
    client = connect_redis(RedisConfig(), tmp_path)
    yield client
    stop_embedded(client)


def beat(client: redis.Redis, consumer: str, seen_at: float) -> None:
    client.hset(WORKERS_KEY, consumer, json.dumps({"pid": 1, "seen_at": seen_at, "frames": 0}))


@pytest.mark.redis
def test_only_heartbeats_since_the_start_count_as_ready(embedded: redis.Redis) -> None:
    # given a heartbeat left by a worker of an earlier run, and one from this run
    started = time.time()
    beat(embedded, "old-host-1", started - 60)
    assert ready_workers(embedded, started) == 0
    beat(embedded, "host-2", started + 0.5)
    # then only the fresh one counts
    assert ready_workers(embedded, started) == 1


@pytest.mark.redis
@pytest.mark.parametrize("ready", [True, False], ids=["worker-ready", "worker-never-ready"])
def test_readers_wait_for_the_workers_at_most_readers_wait_s(
    settings: Settings, embedded: redis.Redis, tmp_path: Path, ready: bool
) -> None:
    # given a service that holds its readers up to 1.5 s for its one worker
    held = with_workers(settings, count=1, readers_wait_s=1.5)
    camera = held.streamer.model_copy(update={"cameras": [make_camera(tmp_path / "clip.mp4")]})
    service = Supervisor(held.model_copy(update={"streamer": camera}))
    started = time.time()
    if ready:
        beat(embedded, "host-1", started + 0.01)
    # when it waits
    clock = time.monotonic()
    service._wait_for_workers(embedded, started)
    waited = time.monotonic() - clock
    # then it goes on at once when the worker is ready, and after the 1.5 s otherwise
    if ready:
        assert waited < 1.0, f"waited {waited:.2f} s for a ready worker"
    else:
        assert 1.4 < waited < 5.0, f"waited {waited:.2f} s for a worker that never came"
