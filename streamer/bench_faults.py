"""``vigil bench faults``: the real service on two cameras while processes, Redis and entries fail.

Method:

1. A temporary ``VIGIL_HOME`` gets its embedded Redis and a gallery of the benchmark's people
   (:data:`~streamer.bench_setup.PEOPLE`). The two cameras are the clip under two names
   (``door`` and ``hall``, or the second clip), read as fast as the workers go
   (``--as-fast-as-possible``), so every pass analyses the same frames.
2. A *pass* is one ``vigil run`` over both cameras until it exits by itself, in a subprocess
   of its own whose log tells which process has which pid. Pass 0 runs without faults: its
   visits (camera, ``recognized``/``unknown``, name) are what every later pass must deliver.
   The ``recognized`` cooldowns are deleted before each pass (each pass is a new visit of
   everyone), and stay in force within it.
3. The faulted passes inject the profile's faults, a few per pass, at seeded random moments
   (``--seed``) after the pass's first frame result: SIGKILL of a worker, of the tracker, of
   a reader, of the supervisor (``vigil run`` is then started again, as an operator or
   systemd would), of the embedded Redis server; a poison entry on the frame bus, the results
   stream and the events stream; Redis full (``CONFIG SET maxmemory`` to 1 byte for
   ``REDIS_FULL_HOLD_S``, then lifted). A fault whose moment comes after the pass ended moves to
   the next pass. Meanwhile people are enrolled (one photo each from LFW, people the clip
   does not show), retried until Redis acknowledges; each must be in the gallery afterwards.
4. Per faulted pass, events are read back from the events stream (poison skipped):
   *lost* = baseline visits with no matching announcement (2 events each: the announcement
   and its ``track_ended``) plus announced tracks that never ended; *duplicates* = event ids
   delivered more than once. A restarted reader, or a restarted service, reads its file from
   the start again: the visits it adds are counted as *replayed*, not as duplicates (new
   tracks, new ids). *Time to recover* is from the fault (for Redis full: from the lift) to the
   next entry the service writes to the results or events stream (the events stream only for
   the tracker); a killed child's *restart* time is from the kill to the supervisor's log line
   starting its successor.
5. The live-camera pass (``camera_kill``, in the ``full`` and ``live`` profiles): the first
   clip as camera ``door`` beside a live camera, GStreamer's RTSP server serving the second
   clip (``streamer.rtsp_clip_server``; the pass is skipped, saying why, when GStreamer is not
   installed). After the live camera's first frame results its server is killed (SIGKILL, a
   camera losing power), left down for a seeded 2-5 s and started again; once ``door`` has
   ended and the live camera has run on for a while, the service is stopped (SIGTERM, which
   ends every open track). A live camera's visits depend on when frames arrive, so it is held
   to this: every announced track ended, no event id twice, and ``door`` delivers its baseline
   visits. Its *time to recover* is from the server being back to the camera's next frame
   result (the outage itself is the camera's, not the service's).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from streamer.bench_faults_readback import (
    POISON_FIELD,
    camera_results,
    collect_pass,
    next_entry_at,
    started_lines,
)
from streamer.bench_faults_report import (
    Fault,
    FaultBenchResult,
    FaultKind,
    LiveCameraOutcome,
    PassRun,
    visit_label,
)
from streamer.bench_setup import (
    check_data,
    enroll_people,
    temporary_home,
)
from streamer.rtsp_clip_server import ClipRtspServer, rtsp_server_missing
from vigil.config import Settings
from vigil.errors import DatasetError, RedisUnavailableError, StreamError
from vigil.machine import cpu_model
from vigil.streams import EMBEDDED_DIRNAME, FRAMES_DIRNAME, servers_on

if TYPE_CHECKING:
    import redis

    from vigil.models.pipeline import FacePipeline

logger = logging.getLogger(__name__)

DEFAULT_JSON = Path("bench-results/faults.json")
DEFAULT_LFW_DIR = Path("../shared/data/lfw/lfw-deepfunneled")
GALLERY_PROBES = ("Alan_Mulally", "Alison_Krauss", "Andy_Perez")
"""LFW people enrolled during the faulted passes: nobody the clip shows, so no visit changes."""
CAMERAS = ("door", "hall")
REORDER_WINDOW_MS = 10_000
"""The service's ``tracker.reorder_window_ms`` in the benchmark (default 500): longer than a killed
worker's frames take to be re-claimed (``bus.claim_idle_ms``, 3 s, plus its restart), so the
tracker waits for them instead of skipping them, and every pass tracks the same frames."""
REDIS_FULL_HOLD_S = 2.0
"""How long Redis refuses writes in a ``redis_full`` fault: longer than a worker's batch."""
PASS_TIMEOUT_S = 240.0
"""Longest one pass may take (start-up, the clip twice, restarts and Redis outages)."""
FIRST_RESULT_TIMEOUT_S = 120.0
RESTART_TIMEOUT_S = 60.0
"""Longest a restarted ``vigil run`` may be refused (the dead one's lease lasts 15 s)."""
_POLL_S = 0.05
_EXTRA_PASSES = 3
"""Passes beyond one per fault for the faults that found nothing to hit (a reader already done)."""
LIVE_CAMERA_TIMEOUT_S = 60.0
"""Longest the live camera may take to deliver its first frame result, and again after its server is back."""
LIVE_DOWN_S = (2.0, 5.0)
"""How long the live camera's server stays dead: seeded, uniform in this range."""
LIVE_RUN_ON_S = 5.0
"""How long the live pass goes on after the file camera ended, before the service is stopped."""


CAMERA_KILL = FaultKind.CAMERA_KILL
"""Injected in a pass of its own (module docstring, step 5), not among the random faults."""
_CHILD_ROLES = {
    FaultKind.WORKER_KILL: "worker-",
    FaultKind.TRACKER_KILL: "tracker",
    FaultKind.READER_KILL: "reader-",
}
PROFILES: dict[str, tuple[FaultKind, ...]] = {
    "full": (*FaultKind, FaultKind.WORKER_KILL, FaultKind.TRACKER_KILL, FaultKind.READER_KILL),
    "short": (FaultKind.TRACKER_KILL, FaultKind.WORKER_KILL, FaultKind.POISON_RESULTS, FaultKind.REDIS_KILL),
    "live": (FaultKind.CAMERA_KILL,),
}
"""Faults injected by profile: ``full`` has every kind (the child kills twice); ``short`` and ``live``
(the live-camera pass alone) are for tests."""


def run_fault_bench(
    clips: Sequence[Path],
    people_dir: Path,
    lfw_dir: Path,
    settings: Settings,
    *,
    seed: int = 0,
    profile: str = "full",
    faults_per_pass: int = 3,
    workers: int = 2,
    reorder_window_ms: int = REORDER_WINDOW_MS,
    config: Path | None = None,
) -> FaultBenchResult:
    """Run the baseline pass, then faulted passes until the profile's faults are all injected.

    Args:
        clips: The two cameras' video files (the same file twice is fine).
        people_dir: Folder with the photos named in :data:`~streamer.bench_setup.PEOPLE`.
        lfw_dir: LFW's folder of people (``lfw-deepfunneled``): the enrolments during the faults.
        settings: Vigil's settings; ``home`` and Redis are replaced by a temporary embedded one.
        seed: Seeds the faults' order, moments and victims.
        profile: A key of :data:`PROFILES`.
        faults_per_pass: Faults injected in one pass at most.
        workers: Worker processes of the service.
        reorder_window_ms: The service's ``streamer.tracker.reorder_window_ms``.
        config: The YAML file the service is started with (None: defaults and environment).

    Raises:
        ValueError: An unknown profile, or ``faults_per_pass``/``workers`` below 1.
        DatasetError: A clip or photo is missing.
        StreamError: A pass did not start or did not end in time.
    """
    if profile not in PROFILES or faults_per_pass < 1 or workers < 1:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, faults_per_pass and workers >= 1")
    photos = {name: path for clip in clips for name, path in check_data(clip, people_dir).items()}
    probes = {name.replace("_", " "): lfw_dir / name / f"{name}_0001.jpg" for name in GALLERY_PROBES}
    for path in probes.values():
        if not path.is_file():
            raise DatasetError(f"{path} not found; pass --lfw with LFW's lfw-deepfunneled folder")
    rng = random.Random(seed)
    from indexer.gallery import Gallery
    from indexer.identify import Identifier
    from vigil.models.pipeline import FacePipeline

    with temporary_home(settings) as (bench_settings, client):
        home = bench_settings.home
        pipeline = FacePipeline.from_settings(bench_settings)
        enroll_people(
            Identifier.from_settings(Gallery(client), pipeline, bench_settings), bench_settings, photos
        )
        sources = []
        for camera, clip in zip(CAMERAS, clips, strict=True):
            link = home / "clips" / f"{camera}{clip.suffix}"
            link.parent.mkdir(exist_ok=True)
            link.symlink_to(clip.resolve())
            sources.append(link)
        command = [sys.executable, "-m", "vigil", "-v"]
        command += ["--config", str(config)] if config is not None else []
        command += ["run", "--as-fast-as-possible", "--quiet", "--workers", str(workers), *map(str, sources)]
        bench = _Bench(bench_settings, command, rng, pipeline)
        bench.env["VIGIL_STREAMER__TRACKER__REORDER_WINDOW_MS"] = str(reorder_window_ms)
        try:
            baseline = bench.run_pass(0, [])
            baseline_visits = sorted(visit_label(visit) for visit in baseline.visits)
            pending: list[FaultKind] = [
                kind for kind in PROFILES[profile] if kind is not FaultKind.CAMERA_KILL
            ]
            rng.shuffle(pending)
            enrolments = list(probes.items())
            passes, faults, enrolled = [], [], []
            index = 0
            while pending and index < len(PROFILES[profile]) + _EXTRA_PASSES:
                index += 1
                planned, pending = pending[:faults_per_pass], pending[faults_per_pass:]
                enrol = [enrolments.pop()] if enrolments else []
                outcome = bench.run_pass(index, planned, enrol, baseline.seconds_to_done)
                pending = outcome.not_injected + pending
                faults += outcome.faults
                enrolled += outcome.enrolled
                passes.append(outcome.compare(baseline_visits))
            live, live_skipped = None, ""
            if CAMERA_KILL in PROFILES[profile]:
                live_skipped = rtsp_server_missing() or ""
                if not live_skipped:
                    live, fault = bench.run_live_pass(index + 1, sources[0], clips[1], baseline_visits)
                    faults.append(fault)
            gallery = Gallery(_connect(bench_settings))
            names = {identity.name for identity in gallery.list_identities()}
            lost = [name for name in enrolled if name not in names]
        finally:
            bench.stop()
            _stop_servers(home)
    return FaultBenchResult(
        clips=[f"{camera}={clip}" for camera, clip in zip(CAMERAS, clips, strict=True)],
        seed=seed,
        profile=profile,
        workers=workers,
        reorder_window_ms=reorder_window_ms,
        baseline_visits=baseline_visits,
        baseline_seconds=baseline.seconds,
        passes=passes,
        faults=faults,
        gallery_writes=len(enrolled),
        gallery_writes_lost=lost,
        cpu_model=cpu_model(),
        cpu_count=len(os.sched_getaffinity(0)),
        live_camera=live,
        live_camera_skipped=live_skipped,
    )


# ----------------------------------------------------------------------------- private helpers


class _Bench:
    """Runs passes of ``vigil run`` in the temporary home and injects faults into them."""

    def __init__(
        self, settings: Settings, command: list[str], rng: random.Random, pipeline: FacePipeline
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.command = command
        self.rng = rng
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("VIGIL_")}
        self.env.pop("REDIS_URL", None)
        self.env.update(VIGIL_HOME=str(settings.home), VIGIL_STREAMER__METRICS__ENABLED="false")
        self.logs = settings.home / "logs"
        self.logs.mkdir(exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_paths: list[Path] = []

    def run_pass(
        self,
        index: int,
        planned: list[FaultKind],
        enrolments: Sequence[tuple[str, Path]] = (),
        window_s: float = 0.0,
    ) -> PassRun:
        self._forget_cooldowns()
        started = time.time()
        self.log_paths = []
        self._start()
        first = self._wait_for_first_result(started)
        # A reader reads its file ahead of the workers and is done early: kill it in the first quarter.
        moments = [
            self.rng.uniform(0.0, window_s / 4 if kind is FaultKind.READER_KILL else window_s)
            for kind in planned
        ]
        planned = [kind for _, kind in sorted(zip(moments, planned, strict=True))]
        moments.sort()
        faults: list[tuple[FaultKind, float, str]] = []
        not_injected: list[FaultKind] = []
        for kind, offset in zip(planned, moments, strict=True):
            while time.time() < first + offset and self._running():
                time.sleep(_POLL_S)
            injected = self._inject(kind) if self._running() else None
            if injected is None:
                not_injected.append(kind)
            else:
                faults.append((kind, *injected))
        enrolled = [name for name, photo in enrolments if self._enrol(name, photo)]
        self._wait_for_exit(started)
        seconds = time.time() - started
        run = self._collect(index, started, first, seconds)
        run.faults = [self._measure(index, kind, at, target) for kind, at, target in faults]
        run.not_injected, run.enrolled = not_injected, enrolled
        logger.info("pass %d: %d faults injected, %d left for later", index, len(faults), len(not_injected))
        return run

    def run_live_pass(
        self, index: int, file_source: Path, live_clip: Path, baseline: Sequence[str]
    ) -> tuple[LiveCameraOutcome, Fault]:
        """The live-camera pass (module docstring, step 5): ``file_source`` beside ``live_clip`` over RTSP.

        Raises:
            StreamError: The RTSP server, the live camera or the service did not come up or back.
        """
        from streamer.cameras import cameras_from_sources

        server = ClipRtspServer(live_clip, self.logs / "rtsp-server.log")
        [other, camera] = [c.name for c in cameras_from_sources([str(file_source), server.url], None, False)]
        file_command = self.command
        self._forget_cooldowns()
        started = time.time()
        self.log_paths = []
        try:
            self.command = [*file_command[: -len(CAMERAS)], str(file_source), server.url]
            server.start()
            self._start()
            first = self._wait_for_camera(camera, started, timeout_s=FIRST_RESULT_TIMEOUT_S)
            time.sleep(self.rng.uniform(1.0, 3.0))
            killed_at = time.time()
            server.kill()
            time.sleep(self.rng.uniform(*LIVE_DOWN_S))
            server.start()
            back_at = time.time()
            resumed = self._wait_for_camera(camera, back_at)
            self._wait_for_camera(other, started, ended=True, timeout_s=PASS_TIMEOUT_S)
            time.sleep(LIVE_RUN_ON_S)
            self.stop()
            assert self.process is not None
            if self.process.returncode != 0:
                raise StreamError(
                    f"vigil run exited with status {self.process.returncode}; see {self.log_paths[-1]}"
                )
        finally:
            self.stop()
            server.kill()
            self.command = file_command
        run = self._collect(index, started, first, time.time() - started)
        delivered = Counter(visit_label(visit) for visit in run.visits if visit.camera == other)
        expected = Counter(label for label in baseline if label.startswith(f"{other}:"))
        recovery_ms = round((resumed - back_at) * 1000, 1)
        outcome = LiveCameraOutcome(
            camera=camera,
            other_camera=other,
            down_s=round(back_at - killed_at, 2),
            frames_before=len(self._camera_results(camera, started, killed_at)),
            frames_after=len(self._camera_results(camera, back_at)),
            recovery_ms=recovery_ms,
            announcements=sum(visit.camera == camera for visit in run.visits),
            other_baseline_visits=sum(expected.values()),
            missing_other_visits=sorted((expected - delivered).elements()),
            replayed_other_visits=sum((delivered - expected).values()),
            unended_tracks=sorted(v.track_id for v in run.visits if v.track_id not in run.ended),
            duplicate_event_ids=sum(count - 1 for count in run.event_ids.values()),
            events=sum(run.event_ids.values()),
        )
        target = f"RTSP server of camera {camera} (down {outcome.down_s:.1f} s)"
        logger.info("live pass: %s, recovered in %.0f ms", target, recovery_ms)
        return outcome, Fault(FaultKind.CAMERA_KILL, index, round(killed_at, 3), target, recovery_ms, None)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _forget_cooldowns(self) -> None:
        """Delete the ``recognized`` cooldowns: each pass is a new visit of everyone in the clip.

        Within a pass they stay in force, so a service restarted on the same file announces no one
        a second time; across passes they would turn the next pass's visits into "seen again".
        """
        client = _connect(self.settings)
        keys = list(client.scan_iter(match=f"{self.settings.streamer.events.stream}:cooldown:*"))
        if keys:
            client.delete(*keys)

    # -- the service

    def _start(self) -> None:
        deadline = time.monotonic() + RESTART_TIMEOUT_S
        while True:
            log_path = self.logs / f"run-{time.time():.3f}.log"
            self.log_paths.append(log_path)
            with open(log_path, "wb") as log:
                self.process = subprocess.Popen(
                    self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT
                )
            try:
                code = self.process.wait(5.0)
            except subprocess.TimeoutExpired:
                return  # running
            if code == 0 or time.monotonic() > deadline:
                if code != 0:
                    raise StreamError(f"vigil run exited with status {code}; see {log_path}")
                return
            time.sleep(1.0)  # refused (the dead service's lease has not expired yet): try again

    def _running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _wait_for_first_result(self, since: float) -> float:
        client, stream = _connect(self.settings), self.settings.streamer.bus.faces_stream
        deadline = time.monotonic() + FIRST_RESULT_TIMEOUT_S
        while time.monotonic() < deadline:
            if next_entry_at(client, stream, since) is not None:
                return time.time()
            if not self._running():
                break
            time.sleep(_POLL_S)
        raise StreamError(f"no frame result within {FIRST_RESULT_TIMEOUT_S:g} s; see {self.log_paths[-1]}")

    def _camera_results(self, camera: str, since: float, until: float | None = None) -> list[float]:
        client = _connect(self.settings)
        return camera_results(client, self.settings.streamer.bus.faces_stream, camera, since, until)[0]

    def _wait_for_camera(
        self, camera: str, since: float, *, ended: bool = False, timeout_s: float = LIVE_CAMERA_TIMEOUT_S
    ) -> float:
        """Wait for ``camera``'s first result of a frame read after ``since`` (``ended``: its end).

        Raises:
            StreamError: It did not come within ``timeout_s``, or the service stopped.
        """
        client, stream = _connect(self.settings), self.settings.streamer.bus.faces_stream
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self._running():
            times, done = camera_results(client, stream, camera, since)
            if done if ended else times:
                return times[0] if times else time.time()
            time.sleep(1.0 if ended else _POLL_S * 4)  # the end is minutes away: read less often
        what = "end" if ended else "frame result"
        raise StreamError(f"no {what} of camera {camera} within {timeout_s:g} s; see {self.log_paths[-1]}")

    def _wait_for_exit(self, started: float) -> None:
        while True:
            assert self.process is not None
            try:
                code = self.process.wait(max(started + PASS_TIMEOUT_S - time.time(), 0.1))
            except subprocess.TimeoutExpired:
                self.stop()
                raise StreamError(f"pass took over {PASS_TIMEOUT_S:g} s; see {self.log_paths[-1]}") from None
            if code == 0:
                return
            raise StreamError(f"vigil run exited with status {code}; see {self.log_paths[-1]}")

    # -- faults

    def _inject(self, kind: FaultKind) -> tuple[float, str] | None:
        """Inject ``kind`` now: when (``redis_full``: the lift) and on what; None if impossible now."""
        if kind in _CHILD_ROLES:
            alive = {name: pid for name, pid in self._children().items() if _alive(pid)}
            names = sorted(name for name in alive if name.startswith(_CHILD_ROLES[kind]))
            if not names:
                return None
            name = self.rng.choice(names)
            return _kill(alive[name]), f"{name} (pid {alive[name]})"
        if kind is FaultKind.SUPERVISOR_KILL:
            assert self.process is not None
            pid = self.process.pid
            at = _kill(pid)
            self.process.wait()
            self._start()
            return at, f"vigil run (pid {pid})"
        if kind is FaultKind.REDIS_KILL:
            servers = servers_on(self.settings.home / EMBEDDED_DIRNAME)
            return (_kill(servers[0]), f"redis-server (pid {servers[0]})") if servers else None
        if kind is FaultKind.REDIS_FULL:
            client = _connect(self.settings)
            client.config_set("maxmemory", 1)
            time.sleep(REDIS_FULL_HOLD_S)
            _connect(self.settings).config_set("maxmemory", 0)
            return time.time(), f"maxmemory 1 byte for {REDIS_FULL_HOLD_S:g} s"
        return self._poison(kind)

    def _poison(self, kind: FaultKind) -> tuple[float, str]:
        from redis.typing import EncodableT, FieldT

        from vigil.streams import connect_frames_redis

        streamer = self.settings.streamer
        if kind is FaultKind.POISON_FRAMES:
            client, stream = (
                connect_frames_redis(self.settings.redis, self.settings.home),
                streamer.bus.stream,
            )
            fields: dict[FieldT, EncodableT] = {b"camera": b"door", b"number": b"not a number"}
        elif kind is FaultKind.POISON_RESULTS:
            client, stream = _connect(self.settings), streamer.bus.faces_stream
            fields = {b"result": b'{"camera":"door"}'}
        else:
            client, stream = _connect(self.settings), streamer.events.stream
            fields = {b"event": b"not an event"}
        client.xadd(stream, {**fields, POISON_FIELD: b"1"})
        return time.time(), stream

    def _enrol(self, name: str, photo: Path) -> bool:
        """Enrol ``name`` until Redis acknowledges it (True), or give up after a minute."""
        from indexer.enroll import enroll_person
        from indexer.gallery import Gallery
        from indexer.identify import Identifier

        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            try:
                gallery = Gallery(_connect(self.settings))
                identifier = Identifier.from_settings(gallery, self.pipeline, self.settings)
                enroll_person(identifier, self.settings.indexer, name, [photo])
                return True
            except RedisUnavailableError as exc:
                logger.info("enrolling %s: %s; retrying", name, exc)
                time.sleep(0.5)
        return False

    # -- reading back

    def _collect(self, index: int, started: float, first: float, seconds: float) -> PassRun:
        client, events = _connect(self.settings), self.settings.streamer.events
        return collect_pass(client, events, self.log_paths, index, started, first, seconds)

    def _children(self) -> dict[str, int]:
        """The supervisor's children by name (``worker-0``, ``tracker``, ``reader-door``): latest pids."""
        pids: dict[str, int] = {}
        for _, name, pid in started_lines(self.log_paths[-1]):
            pids[name] = pid
        return pids

    def _measure(self, index: int, kind: FaultKind, at: float, target: str) -> Fault:
        client = _connect(self.settings)
        streams = [self.settings.streamer.events.stream]
        if kind is not FaultKind.TRACKER_KILL:
            streams.append(self.settings.streamer.bus.faces_stream)
        times = [t for t in (next_entry_at(client, s, at) for s in streams) if t is not None]
        restart_s = None
        if kind in _CHILD_ROLES:
            name, _, pid_text = target.partition(" (pid ")
            killed = int(pid_text.rstrip(")"))
            starts = [
                when
                for path in self.log_paths
                for when, started, pid in started_lines(path)
                if started == name and pid != killed and when >= at - 0.01
            ]
            restart_s = round(min(starts) - at, 2) if starts else None
        recovery_ms = round((min(times) - at) * 1000, 1) if times else None
        return Fault(kind, index, round(at, 3), target, recovery_ms, restart_s)


def _connect(settings: Settings) -> redis.Redis:
    from vigil.streams import connect_redis

    return connect_redis(settings.redis, settings.home)


def _kill(pid: int) -> float:
    at = time.time()
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return at


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by the supervisor, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _stop_servers(home: Path) -> None:
    """Stop the embedded servers that passes (re)started in ``home`` (the bench knows only the first)."""
    for directory in (home / EMBEDDED_DIRNAME, home / FRAMES_DIRNAME):
        for pid in servers_on(directory):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
