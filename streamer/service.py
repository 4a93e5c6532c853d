"""``vigil run``: the supervisor that starts, watches and stops the service's processes.

One process per camera reads frames onto the bus, ``workers.count`` workers analyse them,
and one tracker turns results into events. They are separate processes so that a camera
that hangs in FFmpeg, or a worker that crashes, takes nothing else down; the supervisor
restarts workers and the tracker when they die, and reports a camera whose source failed
for good. All of them meet only through Redis, so workers on other machines can join.

Shutdown (SIGTERM or Ctrl-C) drains: readers stop first, workers finish what is on the
bus, then the tracker ends every open track (``track_ended`` events) and exits. When every
source is a file, the service shuts down the same way by itself once the last frame's
events are published.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from multiprocessing.queues import SimpleQueue
from pathlib import Path
from typing import Any

from streamer.reader import is_file_source
from vigil.config import Settings
from vigil.errors import VigilError
from vigil.stop import StopFlag, pause

logger = logging.getLogger(__name__)

# Exit status of a reader whose source failed for good (not restarted).
EXIT_SOURCE_FAILED = 3
# Exit status of a worker that refused the gallery (GalleryError, e.g. templates of another
# embedder only): restarting cannot help, so the service stops and reports why.
EXIT_GALLERY_REFUSED = 4
SUPERVISE_INTERVAL_S = 0.2
_READY_POLL_S = 0.1
DRAIN_TIMEOUT_S = 60.0
# A process that keeps dying is restarted after a growing pause (not in a tight loop).
RESTART_DELAY_S = 1.0
RESTART_DELAY_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0


@dataclass
class _Child:
    """A supervised process and how to start it again."""

    role: str
    name: str
    target: Callable[..., None]
    args: tuple[Any, ...]
    process: BaseProcess | None = None
    restarts: int = 0
    restart_at: float | None = None
    started_at: float = 0.0
    done: bool = False


@dataclass
class RunSummary:
    """How a run ended."""

    failed_sources: list[str] = field(default_factory=list)
    restarts: int = 0
    gallery_refused: str | None = None
    """Why the workers refused the gallery (their ``GalleryError``'s one line), if they did."""


def prepare_metrics_dir(home: Path, run_id: str) -> Path:
    """An empty folder for this run's metrics, named in the environment *before* prometheus_client loads."""
    directory = home / "metrics" / run_id
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return directory


class Supervisor:
    """Runs the service until the sources are done or a stop is requested.

    Args:
        settings: With ``streamer.cameras`` set (unless ``workers_only``).
        on_ready: Called with the metrics URL (or None) once every process is started.
        workers_only: Start only workers (``vigil worker``); run until stopped.
    """

    def __init__(
        self,
        settings: Settings,
        on_ready: Callable[[str | None], None] | None = None,
        *,
        workers_only: bool = False,
    ) -> None:
        if not settings.streamer.cameras and not workers_only:
            raise VigilError(
                "no cameras: pass a SOURCE to `vigil run` or list streamer.cameras in the config"
            )
        from streamer.worker import plan_workers

        self.settings = plan_workers(settings)
        # A workers-only node (`vigil worker`) adds analysis capacity to a service whose
        # readers and tracker run elsewhere, through the shared Redis.
        self.workers_only = workers_only
        self.on_ready = on_ready
        # Children log at the level the command line asked for.
        self.log_level = logging.getLogger().getEffectiveLevel()
        self.run_id = uuid.uuid4().hex[:8]
        self._context = multiprocessing.get_context("spawn")
        self._stop_readers = self._context.Event()
        self._stop_workers = self._context.Event()
        self._stop_tracker = self._context.Event()
        self._refusals: SimpleQueue[str] = self._context.SimpleQueue()  # workers' GalleryError messages
        self._stopping = threading.Event()
        self.summary = RunSummary()

    @property
    def files_only(self) -> bool:
        return all(is_file_source(camera.source) for camera in self.settings.streamer.cameras)

    def stop(self) -> None:
        """Ask for a draining shutdown (safe from a signal handler or another thread)."""
        self._stopping.set()

    def run(self) -> RunSummary:
        metrics_dir = prepare_metrics_dir(self.settings.home, self.run_id)
        from streamer import metrics  # after prepare_metrics_dir: see streamer.metrics
        from streamer.bus import FrameBus
        from streamer.feed import SOURCES_KEY
        from streamer.tracker import TrackerService
        from vigil.streams import connect_redis

        client = connect_redis(self.settings.redis, self.settings.home)
        FrameBus(client, self.settings.streamer.bus).ensure_group()
        TrackerService(client, self.settings, self.run_id).ensure_group()
        if self.settings.streamer.cameras and not self.workers_only:
            client.hdel(SOURCES_KEY, *(camera.name for camera in self.settings.streamer.cameras))
        url = self._serve_metrics(metrics)
        children = self._children()
        started_at = time.time()
        for child in children:
            if child.role != "reader":
                self._start(child)
        self._wait_for_workers(client, started_at)
        for child in children:
            if child.role == "reader":
                self._start(child)
        if self.on_ready is not None:
            self.on_ready(url)
        try:
            self._supervise(children, metrics)
        finally:
            self._shutdown(children)
            client.close()
            shutil.rmtree(metrics_dir, ignore_errors=True)  # nobody can scrape them any more
            logger.info("service stopped")
        return self.summary

    def _children(self) -> list[_Child]:
        settings = self.settings
        workers = [
            _Child(
                "worker",
                f"worker-{index}",
                worker_main,
                (self.log_level, settings, self._stop_workers, self._refusals),
            )
            for index in range(settings.streamer.workers.count)
        ]
        if self.workers_only:
            return workers
        finish_after = {camera.name for camera in settings.streamer.cameras} if self.files_only else None
        children = [
            _Child(
                "tracker",
                "tracker",
                tracker_main,
                (self.log_level, settings, self.run_id, finish_after, self._stop_tracker),
            )
        ]
        children += workers
        children += [
            _Child(
                "reader",
                f"reader-{camera.name}",
                reader_main,
                (self.log_level, settings, camera.name, self._stop_readers),
            )
            for camera in settings.streamer.cameras
        ]
        return children

    def _wait_for_workers(self, client: Any, since: float) -> None:
        """Return once every worker has sent a heartbeat since ``since``, or ``readers_wait_s`` passed."""
        from streamer.worker import ready_workers

        config = self.settings.streamer.workers
        if config.readers_wait_s <= 0 or self.workers_only:
            return
        deadline = time.monotonic() + config.readers_wait_s
        while not self._stopping.is_set():
            if ready_workers(client, since) >= config.count:
                logger.info("workers ready; starting the readers")
                return
            if not self._refusals.empty():  # a worker refused the gallery: _check stops the service
                return
            if time.monotonic() > deadline:
                logger.warning(
                    "starting the readers after %.0f s, before every worker is ready", config.readers_wait_s
                )
                return
            time.sleep(_READY_POLL_S)

    def _start(self, child: _Child) -> None:
        process = self._context.Process(target=child.target, args=child.args, name=child.name, daemon=False)
        process.start()
        child.process = process
        child.started_at = time.monotonic()
        logger.info("started %s (pid %s)", child.name, process.pid)

    def _bus(self) -> Any:
        """A bus on a fresh connection: after a Redis outage the embedded server has a new socket."""
        from streamer.bus import FrameBus
        from vigil.streams import connect_redis

        return FrameBus(connect_redis(self.settings.redis, self.settings.home), self.settings.streamer.bus)

    def _supervise(self, children: list[_Child], metrics: Any) -> None:
        bus = self._bus()
        last_backlog = 0.0
        while not self._stopping.is_set():
            time.sleep(SUPERVISE_INTERVAL_S)
            for child in children:
                self._check(child, metrics)
            if any(child.role == "tracker" and child.done for child in children):
                return  # every file has ended and its events are out
            readers = [child for child in children if child.role == "reader"]
            if (
                readers
                and all(child.done for child in readers)
                and len(self.summary.failed_sources) == len(readers)
            ):
                logger.error("every source has failed; stopping")
                return
            if time.monotonic() - last_backlog > 1.0:
                last_backlog = time.monotonic()
                try:
                    waiting, pending = bus.backlog()
                except VigilError as exc:
                    logger.warning("cannot read the bus backlog: %s", exc)
                    with contextlib.suppress(VigilError):
                        bus = self._bus()
                    continue
                metrics.BUS_BACKLOG.labels(state="waiting").set(waiting)
                metrics.BUS_BACKLOG.labels(state="pending").set(pending)

    def _check(self, child: _Child, metrics: Any) -> None:
        process = child.process
        if child.done or process is None or process.is_alive():
            return
        code = process.exitcode
        if child.restart_at is None and process.pid is not None:
            metrics.forget_process(process.pid)
        if child.role == "reader" and code in (0, EXIT_SOURCE_FAILED):
            child.done = True
            if code == EXIT_SOURCE_FAILED:
                self.summary.failed_sources.append(child.name.removeprefix("reader-"))
            return
        if child.role == "tracker" and code == 0 and self.files_only:
            child.done = True
            return
        if child.role == "worker" and code == EXIT_GALLERY_REFUSED:
            child.done = True
            if self.summary.gallery_refused is None:
                self.summary.gallery_refused = (
                    self._refusals.get() if not self._refusals.empty() else "a worker refused the gallery"
                )
                logger.info("%s refused the gallery; stopping the service", child.name)
            self._stopping.set()
            return
        if self._stopping.is_set():
            child.done = True
            return
        child.restarts += 1
        self.summary.restarts += 1
        metrics.PROCESS_RESTARTS.labels(component=child.role).inc()
        logger.warning(
            "%s exited with status %s; restarting it (restart %d)", child.name, code, child.restarts
        )
        time.sleep(RESTART_DELAY_S)
        self._start(child)

    def _shutdown(self, children: list[_Child]) -> None:
        self._stop_readers.set()
        self._join([c for c in children if c.role == "reader"], timeout_s=15)
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        try:
            bus = self._bus()
            while time.monotonic() < deadline and any(c.role == "worker" and _alive(c) for c in children):
                if sum(bus.backlog()) == 0:
                    break
                time.sleep(SUPERVISE_INTERVAL_S)
        except VigilError as exc:  # Redis is down: nothing to drain from
            logger.warning("not waiting for the bus to drain: %s", exc)
        self._stop_workers.set()
        self._join([c for c in children if c.role == "worker"], timeout_s=30)
        self._stop_tracker.set()
        self._join([c for c in children if c.role == "tracker"], timeout_s=30)

    def _join(self, children: list[_Child], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for child in children:
            if child.process is not None:
                child.process.join(max(deadline - time.monotonic(), 0.1))
                if child.process.is_alive():
                    logger.warning("%s did not stop in time; terminating it", child.name)
                    child.process.terminate()
                    child.process.join(5)
            child.done = True

    def _serve_metrics(self, metrics: Any) -> str | None:
        config = self.settings.streamer.metrics
        if not config.enabled:
            return None
        try:
            port = metrics.serve(config.host, config.port)
        except OSError as exc:
            raise VigilError(
                f"cannot serve metrics on {config.host}:{config.port} ({exc.strerror}); "
                "set streamer.metrics.port to a free port"
            ) from None
        return f"http://{config.host}:{port}/metrics"


def _alive(child: _Child) -> bool:
    return child.process is not None and child.process.is_alive()


# -- process entry points (top level, so that the spawn start method can import them) ---------


def _child_setup(log_level: int) -> None:
    # Ctrl-C reaches the whole process group; only the supervisor decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=log_level,
        format=f"%(asctime)s %(levelname)s {multiprocessing.current_process().name}: %(message)s",
    )


def _with_redis_retries(component: str, stop: StopFlag, body: Callable[[], None]) -> None:
    """Run ``body`` until it returns, riding out Redis outages with a growing pause."""
    from streamer import metrics
    from vigil.errors import RedisUnavailableError

    delay = 0.5
    while not stop.is_set():
        try:
            body()
            return
        except RedisUnavailableError as exc:
            metrics.REDIS_ERRORS.labels(component=component).inc()
            logger.warning("Redis unavailable (%s); retrying in %.1f s", exc, delay)
            pause(stop, delay)
            delay = min(delay * 2, 10.0)


def tracker_main(
    log_level: int, settings: Settings, run_id: str, finish_after: set[str] | None, stop: StopFlag
) -> None:
    from streamer.tracker import TrackerService
    from vigil.streams import connect_redis

    _child_setup(log_level)
    state: dict[str, TrackerService] = {}

    def body() -> None:
        client = connect_redis(settings.redis, settings.home)
        service = state.get("service")
        if service is None:
            service = state["service"] = TrackerService(client, settings, run_id, finish_after)
        else:  # after a Redis outage: keep the tracks, use the new connection
            service.use_connection(client)
        service.run(stop)

    _with_redis_retries("tracker", stop, body)


def worker_main(log_level: int, settings: Settings, stop: StopFlag, refusals: SimpleQueue[str]) -> None:
    """A worker process. A gallery refused at start-up (``Worker.start``'s ``GalleryError``) ends it
    with ``EXIT_GALLERY_REFUSED`` and its message on ``refusals``: the supervisor stops the
    service and reports it in one line."""
    import torch

    from streamer.worker import Worker
    from vigil.errors import GalleryError
    from vigil.models.pipeline import FacePipeline
    from vigil.streams import connect_redis

    _child_setup(log_level)
    # The supervisor shares the cores out among its workers (plan_workers): more threads per
    # worker than that only makes them wait on each other.
    torch.set_num_threads(settings.streamer.workers.torch_threads or torch.get_num_threads())
    pipeline = FacePipeline.from_settings(settings)

    def body() -> None:
        worker = Worker(connect_redis(settings.redis, settings.home), settings, pipeline)
        try:
            worker.start()
        except GalleryError as exc:  # e.g. templates of another embedder only: a restart cannot help
            refusals.put(str(exc))
            raise SystemExit(EXIT_GALLERY_REFUSED) from None
        worker.run(stop)

    _with_redis_retries("worker", stop, body)


def reader_main(log_level: int, settings: Settings, camera_name: str, stop: StopFlag) -> None:
    from streamer.feed import feed_camera

    _child_setup(log_level)
    camera = next(camera for camera in settings.streamer.cameras if camera.name == camera_name)
    try:
        feed_camera(settings, camera, stop)
    except VigilError as exc:
        logger.error("%s", exc)
        raise SystemExit(EXIT_SOURCE_FAILED) from None
