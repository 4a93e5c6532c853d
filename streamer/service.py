"""``vigil run``: the supervisor that starts, watches and stops the service's processes.

One process per camera reads frames onto the bus, ``workers.count`` workers analyse them,
and one tracker turns results into events. They are separate processes so that a camera
that hangs in FFmpeg, or a worker that crashes, takes nothing else down; the supervisor
restarts workers, the tracker and the bridges when they die (after a growing pause,
``vigil.retry``), and reports a camera whose source failed for good. Each enabled bridge
(``bridges.mqtt``, ``bridges.webhooks``) is one more process relaying events to other systems;
its consumer group on the events stream is created before the tracker starts, so the bridge
gets every event of the run even if it starts later or restarts. A worker or bridge that cannot
start for good (the gallery refused, model weights missing or corrupt, a setting no restart
changes, a broker refusing the bridge's credentials) is not restarted: the service stops and
reports why in one line. All of them meet only through Redis, so workers on other machines can
join.

The children die with the supervisor, even with ``kill -9``: each asks the kernel for
SIGKILL when its parent dies (``PR_SET_PDEATHSIG`` on Linux), and a watchdog thread
waits on the pipe from its parent as well (it reads end-of-file once the parent is gone,
on any system). One service per Redis is enforced by a lease in Redis
(``streamer.lease``), so a second ``vigil run`` refuses to start beside the first.

Shutdown (SIGTERM or Ctrl-C) drains: readers stop first, workers finish what is on the
bus, then the tracker ends every open track (``track_ended`` events) and exits, and the
bridges get up to ``BRIDGE_DRAIN_S`` to deliver what is in the events stream before they are
stopped. When every
source is a file, the service shuts down the same way by itself once the last frame's
events are published.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
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
from typing import TYPE_CHECKING, Any

from streamer.reader import is_file_source
from vigil.config import Settings
from vigil.errors import RedisUnavailableError, VigilError
from vigil.retry import REDIS_RETRY_POLICY, RESTART_POLICY, Backoff
from vigil.stop import StopFlag, pause

if TYPE_CHECKING:
    from streamer.lease import ServiceLease

logger = logging.getLogger(__name__)

# Exit status of a reader whose source failed for good (not restarted).
EXIT_SOURCE_FAILED = 3
# Exit status of a worker that cannot start for good: the gallery refused (GalleryError, e.g.
# templates of another embedder only), model weights missing or corrupt (ModelLoadError), a
# setting (ConfigError); or of a bridge refused for good (ConfigError: unknown broker host, wrong
# password). Restarting cannot help, so the service stops and reports why.
EXIT_START_REFUSED = 4
SUPERVISE_INTERVAL_S = 0.2
_READY_POLL_S = 0.1
DRAIN_TIMEOUT_S = 60.0
# After the tracker's last events, the bridges get this long to deliver what is in the events
# stream (their lag reaches 0); a broker or endpoint that is down does not hold the shutdown up
# longer: what is left stays in the stream for the bridge's next start.
BRIDGE_DRAIN_S = 10.0
# A bridge asked to stop finishes what it has in flight: a webhook request takes up to
# bridges.webhooks.timeout_s, an MQTT publish is acknowledged within a second or two.
BRIDGE_STOP_GRACE_S = 5.0
# How often the supervisor refreshes vigil_bridge_lag_events (it also covers a bridge that is down).
BRIDGE_LAG_EVERY_S = 1.0
# linux/prctl.h: ask for a signal when the parent (thread) that started this process dies.
_PR_SET_PDEATHSIG = 1


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
    """When (``time.monotonic()``) a dead process is due to start again; None while none is waiting."""
    started_at: float = 0.0
    done: bool = False
    backoff: Backoff = field(default_factory=lambda: Backoff(RESTART_POLICY))


@dataclass
class RunSummary:
    """How a run ended."""

    failed_sources: list[str] = field(default_factory=list)
    restarts: int = 0
    start_refused: str | None = None
    """Why the workers or a bridge could not start for good, in one line (a refused gallery,
    missing or corrupt model weights, a setting, a broker refusing the credentials), if they
    could not."""
    lease_lost: bool = False
    """Another service took this Redis over (while it was unreachable): this one stopped."""


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
        self._stop_bridges = self._context.Event()
        # Workers' and bridges' start-up refusals.
        self._refusals: SimpleQueue[str] = self._context.SimpleQueue()
        self._stopping = threading.Event()
        self._frames_client: Any = None
        self.summary = RunSummary()

    @property
    def files_only(self) -> bool:
        return all(is_file_source(camera.source) for camera in self.settings.streamer.cameras)

    def stop(self) -> None:
        """Ask for a draining shutdown (safe from a signal handler or another thread)."""
        self._stopping.set()

    def run(self) -> RunSummary:
        """Run until done or stopped.

        Raises:
            ServiceRunningError: Another service runs on this Redis (nothing was started).
            RedisUnavailableError: Redis cannot be reached at start-up.
        """
        from streamer.lease import ServiceLease
        from vigil.streams import connect_redis

        client = connect_redis(self.settings.redis, self.settings.home)
        lease = None if self.workers_only else ServiceLease(client, self.run_id)
        if lease is not None:
            try:
                lease.acquire()
            except VigilError:
                client.close()
                raise
        try:
            self._run(client, lease)
        finally:
            if lease is not None:
                with contextlib.suppress(RedisUnavailableError):
                    lease.use_connection(connect_redis(self.settings.redis, self.settings.home))
                    lease.release()
            client.close()
        return self.summary

    def _run(self, client: Any, lease: ServiceLease | None) -> None:
        metrics_dir = prepare_metrics_dir(self.settings.home, self.run_id)
        from streamer import metrics  # after prepare_metrics_dir: see streamer.metrics
        from streamer.bus import FrameBus
        from streamer.feed import SOURCES_KEY
        from streamer.tracker import TrackerService
        from vigil.streams import connect_frames_redis

        frames_client = connect_frames_redis(self.settings.redis, self.settings.home)
        self._warn_if_frames_persist(frames_client)
        FrameBus(frames_client, self.settings.streamer.bus).ensure_group()
        # Held for the whole run: the embedded frame server stops when its last client goes, and it
        # keeps nothing (the bus's consumer group included) across a stop.
        self._frames_client = frames_client
        TrackerService(client, self.settings, self.run_id).ensure_group()
        self._ensure_bridge_groups(client)
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
            self._supervise(children, metrics, lease)
        finally:
            self._shutdown(children)
            shutil.rmtree(metrics_dir, ignore_errors=True)  # nobody can scrape them any more
            self._frames_client.close()
            logger.info("service stopped")

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
                "bridge",
                f"bridge-{bridge}",
                bridge_main,
                (self.log_level, settings, bridge, self._stop_bridges, self._refusals),
            )
            for bridge in self.bridges
        ]
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

    @property
    def bridges(self) -> list[str]:
        """The bridges this run starts (none on a workers-only node)."""
        return [] if self.workers_only else self.settings.bridges.enabled_bridges()

    def _ensure_bridge_groups(self, client: Any) -> None:
        """Create the enabled bridges' consumer groups before the tracker starts.

        A new group starts at the stream's end: created now, it holds every event of this run,
        however late its bridge starts (or restarts); created by the bridge, it would miss the
        events published before.
        """
        from streamer.bridges.source import BridgeSource

        for bridge in self.bridges:
            BridgeSource(client, self.settings, bridge, None).ensure_group()

    def _report_bridge_lag(self, client: Any, metrics: Any) -> None:
        from streamer.status import bridge_lag

        for bridge in self.bridges:
            metrics.BRIDGE_LAG.labels(bridge=bridge).set(bridge_lag(client, self.settings, bridge))

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
            if not self._refusals.empty():  # a worker cannot start: _check stops the service
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
        from vigil.streams import connect_frames_redis

        return FrameBus(
            connect_frames_redis(self.settings.redis, self.settings.home), self.settings.streamer.bus
        )

    def _warn_if_frames_persist(self, frames_client: Any) -> None:
        """Camera frames must not reach a disk: say so when the bus's server (the user's) persists them."""
        from vigil.streams import redis_health

        config = self.settings.redis
        if config.url is None and config.frames_url is None:
            return  # the embedded frame server has no persistence at all
        try:
            persistent = redis_health(frames_client).persistent
        except RedisUnavailableError:
            return
        if persistent:
            logger.warning(
                "the frame bus's Redis writes its data to disk (AOF or snapshots), camera frames included; "
                "set redis.frames_url to a Redis with persistence off"
            )

    def _supervise(self, children: list[_Child], metrics: Any, lease: ServiceLease | None) -> None:
        from vigil.streams import connect_redis

        bus = self._bus()
        last_backlog = 0.0
        last_lag = 0.0
        events_client: Any = None
        while not self._stopping.is_set():
            time.sleep(SUPERVISE_INTERVAL_S)
            for child in children:
                self._check(child, metrics)
            if lease is not None and not self._renew(lease):
                return
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
            if self.bridges and time.monotonic() - last_lag > BRIDGE_LAG_EVERY_S:
                last_lag = time.monotonic()
                try:
                    events_client = events_client or connect_redis(self.settings.redis, self.settings.home)
                    self._report_bridge_lag(events_client, metrics)
                except VigilError as exc:
                    logger.warning("cannot read the bridges' lag: %s", exc)
                    events_client = None  # the embedded server may come back on a new socket
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

    def _renew(self, lease: ServiceLease) -> bool:
        """Keep the service lease; False (stop) once another service has taken it over."""
        from vigil.streams import connect_redis

        try:
            if lease.renew_if_due():
                return True
        except RedisUnavailableError as exc:  # cannot renew now: the lease may lapse, renew_if_due retakes it
            logger.warning("cannot renew the service lease: %s", exc)
            with contextlib.suppress(RedisUnavailableError):
                lease.use_connection(connect_redis(self.settings.redis, self.settings.home))
            return True
        logger.error("another service took this Redis over while it was unreachable; stopping")
        self.summary.lease_lost = True
        return False

    def _check(self, child: _Child, metrics: Any) -> None:
        process = child.process
        if child.done or process is None or process.is_alive():
            return
        if child.restart_at is not None:  # dead, waiting for its restart
            if self._stopping.is_set():
                child.done = True
            elif time.monotonic() >= child.restart_at:
                child.restart_at = None
                self._start(child)
            return
        code = process.exitcode
        if process.pid is not None:
            metrics.forget_process(process.pid)
        if child.role == "reader" and code in (0, EXIT_SOURCE_FAILED):
            child.done = True
            if code == EXIT_SOURCE_FAILED:
                self.summary.failed_sources.append(child.name.removeprefix("reader-"))
            return
        if child.role == "tracker" and code == 0 and self.files_only:
            child.done = True
            return
        if child.role in ("worker", "bridge") and code == EXIT_START_REFUSED:
            child.done = True
            if self.summary.start_refused is None:
                self.summary.start_refused = (
                    self._refusals.get() if not self._refusals.empty() else "a worker could not start"
                )
                logger.error(
                    "%s cannot start: %s; stopping the service", child.name, self.summary.start_refused
                )
            self._stopping.set()
            return
        if self._stopping.is_set():
            child.done = True
            return
        child.restarts += 1
        self.summary.restarts += 1
        metrics.PROCESS_RESTARTS.labels(component=child.role).inc()
        # A process that ran for a while had a real run: its death starts the pauses from the beginning.
        delay_s = child.backoff.failed(ran_s=time.monotonic() - child.started_at)
        child.restart_at = time.monotonic() + delay_s
        logger.warning(
            "%s exited with status %s; restarting it in %.1f s (restart %d)",
            child.name,
            code,
            delay_s,
            child.restarts,
        )

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
        bridges = [c for c in children if c.role == "bridge"]
        if bridges:
            self._drain_bridges(bridges)
            self._stop_bridges.set()
            self._join(bridges, timeout_s=self.settings.bridges.webhooks.timeout_s + BRIDGE_STOP_GRACE_S)

    def _drain_bridges(self, bridges: list[_Child]) -> None:
        """Give the running bridges up to ``BRIDGE_DRAIN_S`` to deliver the events already published."""
        from streamer.status import bridge_lag
        from vigil.streams import connect_redis

        deadline = time.monotonic() + BRIDGE_DRAIN_S
        behind: dict[str, int] = {}
        try:
            client = connect_redis(self.settings.redis, self.settings.home)
            try:
                while time.monotonic() < deadline:
                    behind = {
                        c.name: bridge_lag(client, self.settings, c.name.removeprefix("bridge-"))
                        for c in bridges
                        if _alive(c)
                    }
                    if not any(behind.values()):
                        return
                    time.sleep(SUPERVISE_INTERVAL_S)
                logger.warning(
                    "bridges still behind after %.0f s (%s); they deliver the rest at their next start",
                    BRIDGE_DRAIN_S,
                    ", ".join(f"{name}: {lag}" for name, lag in behind.items() if lag),
                )
            finally:
                client.close()
        except VigilError as exc:  # Redis is down: the bridges cannot deliver anything either
            logger.warning("not waiting for the bridges to drain: %s", exc)

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
    die_with_parent()


def die_with_parent() -> None:
    """Make this (spawned) process die when the process that started it dies, even by ``kill -9``.

    Left running, an orphan would go on reading a camera or the bus beside the next service.
    Two mechanisms, because each has a gap: the kernel's parent-death signal (Linux only; it
    follows the parent *thread*, and the supervisor starts its children from its main
    thread) and a watchdog thread on ``multiprocessing``'s pipe from the parent, which reads
    end-of-file when the parent is gone (any system, a few milliseconds later). The watchdog
    also covers a parent that died before the signal was armed: its pipe already reads
    end-of-file.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return  # not started by multiprocessing: nothing to follow
    library = ctypes.util.find_library("c")
    if library is not None and os.uname().sysname == "Linux":
        libc = ctypes.CDLL(library, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            logger.warning("cannot ask for a parent-death signal (errno %d)", ctypes.get_errno())
    threading.Thread(target=_kill_self_after, args=(parent,), name="parent-watchdog", daemon=True).start()


def _kill_self_after(parent: BaseProcess) -> None:
    parent.join()  # returns once the pipe from the parent reads end-of-file: the parent has died
    logger.error("the supervisor has died; exiting")
    os.kill(os.getpid(), signal.SIGKILL)  # like the parent-death signal: no half-done clean-up


def _with_redis_retries(component: str, stop: StopFlag, body: Callable[[], None]) -> None:
    """Run ``body`` until it returns, riding out Redis outages and refusals with a growing pause.

    A refused write (Redis full, cannot persist, a replica) is ridden out the same way: the
    process keeps its state and retries, instead of dying and being restarted in a loop.
    """
    from streamer import metrics

    backoff = Backoff(REDIS_RETRY_POLICY)
    while not stop.is_set():
        started = time.monotonic()
        try:
            body()
            return
        except RedisUnavailableError as exc:
            metrics.REDIS_ERRORS.labels(component=component, error=exc.kind.value).inc()
            delay_s = backoff.failed(ran_s=time.monotonic() - started)
            logger.warning("Redis unavailable (%s); retrying in %.1f s", exc, delay_s)
            pause(stop, delay_s)


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
    """A worker process. A permanent start-up error (``Worker.start``'s ``GalleryError``, missing
    or corrupt weights' ``ModelLoadError``, a ``ConfigError``) ends it, without a traceback,
    with ``EXIT_START_REFUSED`` and its message on ``refusals``: the supervisor stops the service
    and reports it in one line. Anything else (Redis down included) is transient: retried or
    restarted after a growing pause."""
    import torch

    from streamer.worker import Worker
    from vigil.errors import ConfigError, GalleryError, ModelLoadError
    from vigil.models.pipeline import FacePipeline
    from vigil.streams import connect_frames_redis, connect_redis

    _child_setup(log_level)
    # The supervisor shares the cores out among its workers (plan_workers): more threads per
    # worker than that only makes them wait on each other.
    torch.set_num_threads(settings.streamer.workers.torch_threads or torch.get_num_threads())

    started = threading.Event()  # past start-up: a later error is a crash, restarted as one

    try:
        pipeline = FacePipeline.from_settings(settings)

        def body() -> None:
            worker = Worker(
                connect_redis(settings.redis, settings.home),
                settings,
                pipeline,
                frames_client=connect_frames_redis(settings.redis, settings.home),
            )
            worker.start()  # loads the models once: a Worker after a Redis outage finds them loaded
            started.set()
            worker.run(stop)

        _with_redis_retries("worker", stop, body)
    except (GalleryError, ModelLoadError, ConfigError) as exc:
        if started.is_set():
            raise
        # The same at every restart: the supervisor logs it in one line and stops the service.
        refusals.put(str(exc))
        raise SystemExit(EXIT_START_REFUSED) from None


def bridge_main(
    log_level: int, settings: Settings, bridge: str, stop: StopFlag, refusals: SimpleQueue[str]
) -> None:
    """A bridge process (``mqtt`` or ``webhooks``). A ``ConfigError`` (unknown broker host, refused
    credentials, unusable TLS files or URLs) is permanent: it ends the process with
    ``EXIT_START_REFUSED`` and its message on ``refusals``, and the supervisor stops the service.
    Anything else is a crash, restarted after a growing pause."""
    from vigil.errors import ConfigError

    _child_setup(log_level)
    try:
        run: Callable[[Settings, StopFlag], None]
        if bridge == "mqtt":
            from streamer.bridges.mqtt import run_mqtt_bridge

            run = run_mqtt_bridge
        else:
            from streamer.bridges.webhooks import run_webhooks_bridge

            run = run_webhooks_bridge
        _with_redis_retries("bridge", stop, lambda: run(settings, stop))
    except ModuleNotFoundError as exc:  # a dependency missing from this installation
        refusals.put(f"{bridge} bridge: {exc}; reinstall vigil with its dependencies")
        raise SystemExit(EXIT_START_REFUSED) from None
    except ConfigError as exc:
        refusals.put(f"{bridge} bridge: {exc}")
        raise SystemExit(EXIT_START_REFUSED) from None


def reader_main(log_level: int, settings: Settings, camera_name: str, stop: StopFlag) -> None:
    from streamer.feed import feed_camera

    _child_setup(log_level)
    camera = next(camera for camera in settings.streamer.cameras if camera.name == camera_name)
    try:
        feed_camera(settings, camera, stop)
    except VigilError as exc:
        logger.error("%s", exc)
        raise SystemExit(EXIT_SOURCE_FAILED) from None
