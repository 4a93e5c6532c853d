"""``vigil bench stream``: Vigil's worker path against the face_recognition recipe, on one clip.

Method, in one run:

1. Every frame of the clip is decoded once (OpenCV's FFmpeg backend, RGB) and kept in memory;
   both sides analyse the same arrays, and neither is timed for decoding.
2. The same people are enrolled for both sides from one photo each: dlib encodings for the
   recipe (:func:`~streamer.bench_recipe.encode_people`), and for Vigil a gallery in a
   temporary ``VIGIL_HOME`` (embedded Redis, :func:`~indexer.enroll.enroll_person`) that is
   removed afterwards. Everything else comes from the caller's settings.
3. Throughput: the frames are cut into consecutive slices (rounds); on each slice the recipe
   (full resolution, one core, as its users run it) and then Vigil's worker path (batches of
   ``streamer.workers.max_batch`` frames: ``detector.detect`` → ``embed_detections`` →
   ``Identifier.name_faces``, torch on its default threads) run on the same frames, so load
   from elsewhere on the machine hits both alike. Each side warms up first, untimed. Wall
   seconds (``perf_counter``) and process CPU seconds (``process_time``: every thread, so it
   exceeds wall time when torch uses several) are summed over the analysis calls.
4. Latency: the real service (``vigil run CLIP``: the :class:`~streamer.service.Supervisor`
   with one camera playing the file in real time at the camera's default fps, the configured
   workers, the tracker) runs on the clip in the temporary home, in a process of its own. Its
   reader starts once every worker has loaded its models (``streamer.workers.readers_wait_s``),
   as a camera that was already streaming when the service came up: otherwise the 9 s clip
   would be over before the first frame is analysed. Afterwards the results stream gives,
   per analysed frame, capture → result: the reader's ``read_at`` (when the frame was due
   and read) to the millisecond time of the stream id the worker wrote the result under.
   The events stream gives the events' own ``latency_ms`` (``read_at`` → publication by
   the tracker).

5. Age and gender: what each ``streamer.tracker.attribute_model`` costs, per face in the
   workers and per track in the tracker (:mod:`streamer.bench_attribute_cost`). The service
   run uses the configured model; for ``fine_tuned`` the copy promoted in the caller's home is
   promoted in the temporary one too.

Throughput leaves out what the service adds around the analysis (JPEG on the bus, Redis,
tracking); latency includes all of it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import multiprocessing
import os
import platform
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from streamer.bench_attribute_cost import AttributeCost, measure_attribute_cost
from streamer.bench_setup import (
    check_data,
    decode_clip,
    enroll_people,
    machine_busy_s,
    markdown_grid,
    temporary_home,
)
from streamer.tally import FramesTally
from vigil.config import CameraConfig, Settings, load_settings
from vigil.errors import ModelLoadError, StreamError
from vigil.machine import cpu_model
from vigil.typing import ImageRGB

if TYPE_CHECKING:
    import redis

    from indexer.calibration import Thresholds
    from indexer.identify import Identifier
    from streamer.bench_recipe import RecipeResult

logger = logging.getLogger(__name__)

DEFAULT_JSON = Path("bench-results/stream.json")
MUST_FIND = "Barack Obama"
"""Whom Vigil must find besides the recipe's people: he is in the audience at the clip's end."""
TARGET_SPEEDUP = 5.0
"""The issue's target (#12): Vigil's frames per second over the full-resolution recipe's."""
DEFAULT_ROUNDS = 5
SERVICE_TIMEOUT_S = 300.0
"""Longest the service may take over the clip (9 s of video, plus start-up and drain)."""
_SERVICE_STOP_S = 90.0
_WORKERS_READY_S = 120.0


@dataclass(frozen=True)
class SideResult(FramesTally):
    """One contender's tally over all rounds.

    Attributes:
        label: Which contender, and how it runs (library, threads).
    """

    label: str

    def plus(self, other: SideResult) -> SideResult:
        """This result and ``other`` (more frames of the same contender) together."""
        names = {
            name: self.names.get(name, 0) + other.names.get(name, 0) for name in {*self.names, *other.names}
        }
        return SideResult(
            frames=self.frames + other.frames,
            seconds=self.seconds + other.seconds,
            cpu_seconds=self.cpu_seconds + other.cpu_seconds,
            names=dict(sorted(names.items())),
            faces=self.faces + other.faces,
            unknown_faces=self.unknown_faces + other.unknown_faces,
            faces_embedded=self.faces_embedded + other.faces_embedded,
            label=self.label,
        )

    def to_dict(self) -> dict[str, object]:
        derived = {"fps": self.fps, "cpu_seconds_per_frame": self.cpu_seconds_per_frame}
        return {**dataclasses.asdict(self), **derived}


@dataclass(frozen=True)
class Percentiles:
    """A latency distribution: how many values, the median and the 99th percentile."""

    count: int
    p50_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class EventLatency:
    """One ``recognized``/``unknown`` event of the service run."""

    type: str
    name: str | None
    frame: int
    latency_ms: float


@dataclass(frozen=True)
class ServiceLatency:
    """Capture → result and capture → event latency of the real service on the clip.

    Attributes:
        camera_fps: Frames per second the reader sampled from the clip.
        workers: Worker processes.
        wall_s: The whole run, from starting the service to its exit (model loading included).
        frames_analysed: Results the workers wrote (the end-of-stream marker excluded).
        startup_s: From starting the service to its first frame read: spawning the processes
            and loading the models (the reader waits for the workers).
        frames: Capture → result over every analysed frame.
        frame_ms: Those latencies, frame by frame in the order the results were written.
        events: ``latency_ms`` of the ``recognized`` and ``unknown`` events.
        event_list: Those events, in publication order.
    """

    camera_fps: float
    workers: int
    wall_s: float
    frames_analysed: int
    startup_s: float | None
    frames: Percentiles
    frame_ms: tuple[float, ...]
    events: Percentiles
    event_list: tuple[EventLatency, ...]


@dataclass(frozen=True)
class StreamBenchResult:
    """Everything ``vigil bench stream`` measured, and the conditions it measured under.

    Attributes:
        clip: The video file.
        frame_size: Width and height of its frames, in pixels.
        recipe: The face_recognition recipe at full resolution.
        vigil: Vigil's worker path.
        rounds: Interleaved slices the frames were cut into.
        batch_size: Frames per Vigil batch (``streamer.workers.max_batch``).
        workers: Vigil's worker processes (``streamer.workers.count``, 0 decided by ``plan_workers``).
        torch_threads: Torch's threads in each of them.
        rule: Vigil's open-set rule in force: cosine threshold, margin, and where it came from.
        embedder_version: Vigil's embedding space.
        detector: Vigil's detector backend (``detector.backend``).
        min_face_size_px: Vigil's detector's smallest face.
        cpu_model: From ``/proc/cpuinfo``.
        cpu_count: Logical CPUs this process may use.
        load_average: One-minute load average before the benchmark started and after the rounds.
        other_cpu_s: CPU seconds other processes used during the rounds (None where
            ``/proc/stat`` is unreadable): how shared the machine was.
        latency: The service run, or None when skipped.
        attribute_cost: What each age and gender model costs, or None (no face in the frames).
        attribute_model: The model the service run used (``streamer.tracker.attribute_model``, or
            ``off`` without ``streamer.tracker.attributes``).
    """

    clip: str
    frame_size: tuple[int, int]
    recipe: SideResult
    vigil: SideResult
    rounds: int
    batch_size: int
    workers: int
    torch_threads: int
    rule: Thresholds
    embedder_version: str
    detector: str
    min_face_size_px: int
    cpu_model: str
    cpu_count: int
    load_average: tuple[float, float]
    other_cpu_s: float | None
    latency: ServiceLatency | None
    attribute_cost: AttributeCost | None = None
    attribute_model: str = "head"

    @property
    def speedup(self) -> float:
        """Vigil's frames per second over the recipe's (0 when the recipe was not timed)."""
        return self.vigil.fps / self.recipe.fps if self.recipe.fps > 0 else 0.0

    @property
    def missed(self) -> frozenset[str]:
        """Whom the target needs Vigil to find and it did not: the recipe's people, and Obama."""
        return (self.recipe.found | {MUST_FIND}) - self.vigil.found

    @property
    def target_met(self) -> bool:
        return self.speedup >= TARGET_SPEEDUP and not self.missed

    @property
    def camera_fps(self) -> float:
        """Analysed frames per second of one camera in the service (the camera default)."""
        return self.latency.camera_fps if self.latency is not None else _default_camera_fps()

    def cameras(self, side: SideResult) -> float:
        """Cameras at ``camera_fps`` that ``side``'s throughput covers (readers' decoding aside)."""
        return side.fps / self.camera_fps

    def to_dict(self) -> dict[str, object]:
        derived = {
            "method": "same decoded frames, interleaved rounds; wall perf_counter, CPU process_time",
            "python": platform.python_version(),
            "speedup": self.speedup,
            "target": {
                "speedup_at_least": TARGET_SPEEDUP,
                "must_find": sorted(self.recipe.found | {MUST_FIND}),
                "missed": sorted(self.missed),
                "met": self.target_met,
            },
            "camera_fps": self.camera_fps,
            "cameras_per_cpu": {"vigil": self.cameras(self.vigil), "recipe": self.cameras(self.recipe)},
            "recipe": self.recipe.to_dict(),
            "vigil": self.vigil.to_dict(),
        }
        return {**dataclasses.asdict(self), **derived}

    def to_markdown(self) -> str:
        """The report: conditions, the side-by-side table, the target, then latency."""
        recipe, vigil = self.recipe, self.vigil
        rows = [
            ("frames", str(recipe.frames), str(vigil.frames)),
            ("**frames/s**", f"{recipe.fps:.2f}", f"**{vigil.fps:.2f}**"),
            ("wall s", f"{recipe.seconds:.1f}", f"{vigil.seconds:.1f}"),
            ("CPU s (all threads)", f"{recipe.cpu_seconds:.1f}", f"{vigil.cpu_seconds:.1f}"),
            ("CPU s per frame", f"{recipe.cpu_seconds_per_frame:.3f}", f"{vigil.cpu_seconds_per_frame:.3f}"),
            ("faces detected", str(recipe.faces), str(vigil.faces)),
            ("unknown faces", str(recipe.unknown_faces), str(vigil.unknown_faces)),
            (
                "faces embedded (the others still faces)",
                str(recipe.faces_embedded),
                str(vigil.faces_embedded),
            ),
            *[
                (f"frames naming {name}", str(recipe.names.get(name, 0)), str(vigil.names.get(name, 0)))
                for name in sorted({*recipe.names, *vigil.names})
            ],
            (
                f"cameras at {self.camera_fps:g} fps",
                f"{self.cameras(recipe):.2f}",
                f"{self.cameras(vigil):.2f}",
            ),
        ]
        missed = f"; missed {', '.join(sorted(self.missed))}" if self.missed else ""
        lines = [
            "## Stream: face_recognition recipe vs Vigil",
            "",
            *self._conditions(),
            "",
            markdown_grid(("", recipe.label, vigil.label), rows),
            "",
            f"Speed-up **{self.speedup:.2f}×**; target (≥ {TARGET_SPEEDUP:g}×, finding the recipe's people "
            f"plus {MUST_FIND}): **{'met' if self.target_met else 'not met'}**{missed}. Cameras = frames/s "
            f"÷ {self.camera_fps:g}, an upper bound: in the service each camera's reader also decodes "
            "every frame, and the tracker needs CPU too.",
        ]
        if self.latency is not None:
            lines += [
                "",
                *_latency_markdown(self.latency),
                f"Age and gender in that run: `{self.attribute_model}`.",
            ]
        if self.attribute_cost is not None:
            lines += ["", *self.attribute_cost.to_markdown()]
        return "\n".join(lines) + "\n"

    def _conditions(self) -> list[str]:
        width, height = self.frame_size
        rule = self.rule
        others = "" if self.other_cpu_s is None else f", other processes used {self.other_cpu_s:.0f} CPU s"
        return [
            f"- clip {self.clip}: {self.vigil.frames} frames at {width}×{height}, the same frames for both "
            f"sides, interleaved in {self.rounds} rounds",
            f"- CPU {self.cpu_model}, {self.cpu_count} logical CPUs; load average {self.load_average[0]:.2f} "
            f"before, {self.load_average[1]:.2f} after the rounds{others}",
            f"- Vigil: {self.workers} worker process(es), torch on {self.torch_threads} thread(s) each, "
            f"batch {self.batch_size}, {self.embedder_version}, {self.detector} min face "
            f"{self.min_face_size_px} px, rule cosine ≥ {rule.threshold:.4f} with margin {rule.margin:.2f} "
            f"({rule.source})",
        ]


def run_stream_bench(
    clip: Path,
    people_dir: Path,
    settings: Settings | None = None,
    *,
    rounds: int = DEFAULT_ROUNDS,
    measure_latency: bool = True,
    frame_range: tuple[int, int] | None = None,
) -> StreamBenchResult:
    """Run the recipe and Vigil side by side on the clip, then (optionally) the service.

    Args:
        clip: A video file OpenCV can read.
        people_dir: Folder with the photos named in :data:`PEOPLE`.
        settings: Vigil's settings (``load_settings()`` when None); ``home`` is replaced by a
            temporary one, and Redis by the embedded server there.
        rounds: Interleaved slices (fewer when the frames hold fewer batches).
        measure_latency: Also run the service in real time on the whole clip (about 30 s).
        frame_range: Analyse only frames ``[start, stop)`` (None: all), for quick checks.

    Raises:
        ValueError: ``rounds`` below 1, or an empty ``frame_range``.
        DatasetError: The clip or a photo is missing, or the range holds no frame.
        ModelLoadError: dlib (the ``reference`` extra) or Vigil's models are missing.
        StreamError: The clip cannot be decoded, or the service run failed.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    if frame_range is not None and not 0 <= frame_range[0] < frame_range[1]:
        raise ValueError(f"frame_range must be [start, stop) with 0 <= start < stop, got {frame_range}")
    photos = check_data(clip, people_dir)
    settings = load_settings() if settings is None else settings
    load_before = os.getloadavg()[0]

    from indexer.gallery import Gallery
    from indexer.identify import Identifier
    from streamer.bench_recipe import encode_people, run_recipe
    from streamer.worker import plan_workers
    from vigil.models.pipeline import FacePipeline

    frames = decode_clip(clip, frame_range)
    encodings = encode_people(photos)
    with temporary_home(plan_workers(settings)) as (bench_settings, client):
        carry_attribute_tail(settings, bench_settings.home)
        pipeline = FacePipeline.from_settings(bench_settings)
        identifier = Identifier.from_settings(Gallery(client), pipeline, bench_settings)
        enroll_people(identifier, bench_settings, photos)
        batch_size = bench_settings.streamer.workers.max_batch
        workers = bench_settings.streamer.workers
        run_recipe(frames[:1], encodings)  # warm-up, untimed: first calls allocate
        with VigilWorkers(bench_settings, workers.count, workers.torch_threads, frames[:batch_size]) as vigil:
            slices = interleaved_slices(len(frames), rounds, batch_size)
            busy_before, cpu_before = machine_busy_s(), time.process_time()
            sides: list[SideResult] = []
            for part in slices:
                logger.info("round: frames %d to %d", part.start, part.stop - 1)
                round_sides = [_from_recipe(run_recipe(frames[part], encodings))]
                round_sides.append(vigil.analyse(frames[part], batch_size))
                sides = (
                    round_sides if not sides else [a.plus(b) for a, b in zip(sides, round_sides, strict=True)]
                )
            busy_after, cpu_after = machine_busy_s(), time.process_time()
        load_after = os.getloadavg()[0]
        rule = identifier.thresholds()  # for the gallery as enrolled
        latency = measure_service_latency(bench_settings, client, clip) if measure_latency else None
        attribute_cost = measure_attribute_cost(bench_settings, pipeline, frames, settings.home)
    other_cpu_s = None
    if busy_before is not None and busy_after is not None:
        # Our own CPU: this process (the recipe, handing out batches) and the workers' analysis.
        ours = cpu_after - cpu_before + sides[1].cpu_seconds
        other_cpu_s = max(busy_after - busy_before - ours, 0.0)
    height, width = frames[0].shape[:2]
    return StreamBenchResult(
        clip=str(clip),
        frame_size=(width, height),
        recipe=sides[0],
        vigil=sides[1],
        rounds=len(slices),
        batch_size=batch_size,
        workers=workers.count,
        torch_threads=workers.torch_threads,
        rule=rule,
        embedder_version=pipeline.embedder.version,
        detector=pipeline.detector.name,
        min_face_size_px=bench_settings.detector.min_face_size_px,
        cpu_model=cpu_model(),
        cpu_count=len(os.sched_getaffinity(0)),
        load_average=(load_before, load_after),
        other_cpu_s=other_cpu_s,
        latency=latency,
        attribute_cost=attribute_cost,
        attribute_model=attribute_model_of(settings),
    )


def attribute_model_of(settings: Settings) -> str:
    """The age and gender model the service runs: ``head``, ``fine_tuned``, or ``off``."""
    tracker = settings.streamer.tracker
    return tracker.attribute_model if tracker.attributes else "off"


def carry_attribute_tail(settings: Settings, home: Path) -> None:
    """With ``attribute_model: fine_tuned``, promote the copy in force in ``settings.home`` in ``home`` too.

    Raises:
        ModelLoadError: None is promoted in ``settings.home`` (the service would refuse to start).
    """
    from vigil.artifacts import ArtifactRegistry
    from vigil.models.attribute_tail import NONE_PROMOTED, TAIL_FILE

    if attribute_model_of(settings) != "fine_tuned":
        return
    current = ArtifactRegistry(settings.home).current("attribute_tail")
    if current is None:
        raise ModelLoadError(NONE_PROMOTED)
    registry = ArtifactRegistry(home)
    copied = registry.add(
        "attribute_tail",
        {TAIL_FILE: current.file(TAIL_FILE).read_bytes()},
        embedder_version=current.embedder_version,
        metrics=current.metrics,
        data=current.data,
        notes=f"copy of {current.version} for the benchmark",
    )
    registry.promote("attribute_tail", copied.version)


class VigilWorkers:
    """Vigil's side: ``count`` worker processes analysing batches of frames, as ``vigil run`` starts them.

    Each process loads the face pipeline and an :class:`~indexer.identify.Identifier` over the
    gallery in ``settings`` (its Redis must be running), sets torch to ``torch_threads``, and
    analyses one batch untimed before it takes work. ``analyse`` hands out whole batches and
    returns when all are done: wall time is the parent's, CPU time the children's own.

    Example:
        >>> with VigilWorkers(settings, count=2, torch_threads=1, warm_up=frames[:8]) as workers:
        ...     side = workers.analyse(frames, batch_size=8)
    """

    def __init__(
        self, settings: Settings, count: int, torch_threads: int, warm_up: Sequence[ImageRGB]
    ) -> None:
        if count < 1 or torch_threads < 1:
            raise ValueError(f"count and torch_threads must be at least 1, got {count} and {torch_threads}")
        self.count = count
        self.torch_threads = torch_threads
        context = multiprocessing.get_context("spawn")
        self._pool = context.Pool(
            count, initializer=_start_analyser, initargs=(settings, torch_threads, warm_up)
        )

    def __enter__(self) -> VigilWorkers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pool.terminate()
        self._pool.join()

    @property
    def label(self) -> str:
        return f"Vigil workers ({self.count} × torch on {self.torch_threads} thread(s))"

    def analyse(self, frames: Sequence[ImageRGB], batch_size: int) -> SideResult:
        """Analyse ``frames`` in batches of ``batch_size`` across the workers; count who was named where.

        Raises:
            ValueError: ``batch_size`` is below 1.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        batches = [list(frames[start : start + batch_size]) for start in range(0, len(frames), batch_size)]
        started = time.perf_counter()
        tallies = self._pool.map(_analyse_batch, batches, chunksize=1)
        seconds = time.perf_counter() - started
        names: dict[str, int] = {}
        for tally in tallies:
            for name, count in tally.names.items():
                names[name] = names.get(name, 0) + count
        return SideResult(
            frames=len(frames),
            seconds=seconds,
            cpu_seconds=sum(tally.cpu_seconds for tally in tallies),
            names=dict(sorted(names.items())),
            faces=sum(tally.faces for tally in tallies),
            unknown_faces=sum(tally.unknown_faces for tally in tallies),
            faces_embedded=sum(tally.faces_embedded for tally in tallies),
            label=self.label,
        )


def analyse_batch(identifier: Identifier, batch: Sequence[ImageRGB]) -> FramesTally:
    """One batch as a worker analyses it: ``detect`` → ``embed_detections`` → ``name_faces``.

    A person counts on a frame when some face's open-set decision named them; every enrolled
    name is listed (0 when never named). ``seconds`` and ``cpu_seconds`` cover the analysis.
    """
    pipeline = identifier.pipeline
    started, cpu_started = time.perf_counter(), time.process_time()
    # One camera's consecutive frames, as a worker's batch of a single camera holds them.
    scenes = ["clip"] * len(batch)
    faces = pipeline.embed_detections(list(batch), pipeline.detector.detect(list(batch)), scenes)
    named = identifier.name_faces([face for frame_faces in faces for face in frame_faces])
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    names = {identity.name: 0 for identity in identifier.gallery.list_identities()}
    faces_count = unknown = offset = 0
    for frame_faces in faces:
        answers = named[offset : offset + len(frame_faces)]
        offset += len(frame_faces)
        faces_count += len(answers)
        unknown += sum(answer.name is None for answer in answers)
        for name in {answer.name for answer in answers if answer.name is not None}:
            names[name] = names.get(name, 0) + 1
    embedded = sum(not face.reused for frame_faces in faces for face in frame_faces)
    return FramesTally(len(batch), seconds, cpu_seconds, names, faces_count, unknown, embedded)


def measure_service_latency(settings: Settings, client: redis.Redis, clip: Path) -> ServiceLatency:
    """Run ``vigil run CLIP`` (real time, the camera's default fps) and read back its latencies.

    The service runs in a process of its own (it sets process-wide state for its metrics),
    with metrics serving off, against the Redis server ``client`` talks to.

    Args:
        settings: The home and Redis of ``client``, with the gallery enrolled.
        client: Reads the results and events streams afterwards.
        clip: The video file.

    Raises:
        StreamError: The service failed, or did not finish within ``SERVICE_TIMEOUT_S``.
    """
    from streamer.cameras import cameras_from_sources
    from streamer.events import EventType, read_events
    from vigil.streams import StreamEntry, redis_errors

    [camera] = cameras_from_sources([str(clip)], fps=None, realtime=True)
    metrics = settings.streamer.metrics.model_copy(update={"enabled": False})
    # The reader starts once the worker has loaded its models, as a camera that was already
    # streaming when the service came up: otherwise the clip is half over before the first analysis.
    workers = settings.streamer.workers.model_copy(update={"readers_wait_s": _WORKERS_READY_S})
    streamer = settings.streamer.model_copy(
        update={"cameras": [camera], "metrics": metrics, "workers": workers}
    )
    process = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(settings.model_copy(update={"streamer": streamer}),), name="vigil.bench:service"
    )
    started, started_at = time.monotonic(), time.time()
    process.start()
    try:
        process.join(SERVICE_TIMEOUT_S)
    finally:  # also on Ctrl-C: never leave the service running on a Redis about to go
        timed_out = process.is_alive()
        if timed_out:
            process.terminate()  # the service drains on SIGTERM
            process.join(_SERVICE_STOP_S)
            if process.is_alive():
                process.kill()
                process.join()
    wall_s = time.monotonic() - started
    if timed_out or process.exitcode != 0:
        reason = (
            f"took over {SERVICE_TIMEOUT_S:g} s" if timed_out else f"exited with status {process.exitcode}"
        )
        raise StreamError(f"the service run on {clip} {reason}; try `vigil run {clip}` to see why")
    with redis_errors():
        entries = cast(list[StreamEntry], client.xrange(settings.streamer.bus.faces_stream))
    timings = result_timings(entries)
    events = tuple(
        EventLatency(event.type.value, event.name, event.frame, event.latency_ms)
        for _, event in read_events(client, settings.streamer.events)
        if event.type in (EventType.RECOGNIZED, EventType.UNKNOWN)
    )
    return ServiceLatency(
        camera_fps=camera.fps,
        workers=settings.streamer.workers.count,
        wall_s=wall_s,
        frames_analysed=len(timings),
        startup_s=min(read_at for read_at, _ in timings) - started_at if timings else None,
        frames=percentiles(frame_latencies(timings)),
        frame_ms=tuple(round(latency, 1) for latency in frame_latencies(timings)),
        events=percentiles([event.latency_ms for event in events]),
        event_list=events,
    )


def result_timings(entries: Sequence[tuple[bytes, dict[bytes, bytes]]]) -> list[tuple[float, int]]:
    """``(read_at, written_ms)`` of every frame result of a results stream, in stream order.

    ``read_at`` is the reader's Unix time for the frame in seconds; ``written_ms`` the
    millisecond part of the entry's id, Redis's clock when the worker added it. End-of-stream
    markers are skipped.
    """
    from streamer.analysis import FrameResult

    timings = []
    for raw_id, fields in entries:
        result = FrameResult.from_fields(fields)
        if not result.end_of_stream and not math.isnan(result.read_at):
            timings.append((result.read_at, int(raw_id.decode().split("-", 1)[0])))
    return timings


def frame_latencies(timings: Sequence[tuple[float, int]]) -> list[float]:
    """Capture → result milliseconds of every frame from :func:`result_timings`, in the same order."""
    return [written_ms - read_at * 1000 for read_at, written_ms in timings]


def percentiles(values_ms: Sequence[float]) -> Percentiles:
    """Count, median and 99th percentile (numpy's linear interpolation), to 0.1 ms."""
    if not values_ms:
        return Percentiles(0, None, None)
    p50, p99 = np.percentile(np.asarray(values_ms, dtype=np.float64), [50, 99])
    return Percentiles(len(values_ms), round(float(p50), 1), round(float(p99), 1))


def interleaved_slices(count: int, rounds: int, batch_size: int) -> list[slice]:
    """At most ``rounds`` consecutive slices of ``count`` frames, whole batches each but the last."""
    batches = math.ceil(count / batch_size)
    per_round = math.ceil(batches / max(min(rounds, batches), 1)) * batch_size
    return [slice(start, min(start + per_round, count)) for start in range(0, count, per_round)]


# ----------------------------------------------------------------------------- private helpers


# The analysing processes' own identifier: a pool's initializer can only leave state in
# the process, and each process needs its loaded models for every batch it is given.
_ANALYSER: Identifier | None = None


def _start_analyser(settings: Settings, torch_threads: int, warm_up: Sequence[ImageRGB]) -> None:
    import torch

    from indexer.gallery import Gallery
    from indexer.identify import Identifier
    from vigil.models.pipeline import FacePipeline

    global _ANALYSER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which ends the pool
    torch.set_num_threads(torch_threads)
    pipeline = FacePipeline.from_settings(settings)
    pipeline.load()
    _ANALYSER = Identifier.from_settings(Gallery.from_settings(settings), pipeline, settings)
    analyse_batch(_ANALYSER, warm_up)  # first calls allocate: untimed


def _analyse_batch(batch: Sequence[ImageRGB]) -> FramesTally:
    assert _ANALYSER is not None, "the pool's initializer loads the analyser"
    return analyse_batch(_ANALYSER, batch)


def _serve(settings: Settings) -> None:
    """The service's process: ``vigil run`` without the printing."""
    from streamer.service import Supervisor

    supervisor = Supervisor(settings)
    signal.signal(signal.SIGTERM, lambda *_: supervisor.stop())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which terminates us
    if supervisor.run().failed_sources:
        raise SystemExit(2)


def _default_camera_fps() -> float:
    fps: float = CameraConfig.model_fields["fps"].default
    return fps


def _from_recipe(result: RecipeResult) -> SideResult:
    tally = {field.name: getattr(result, field.name) for field in dataclasses.fields(FramesTally)}
    return SideResult(**tally, label="face_recognition recipe (dlib, 1 thread, full resolution)")


def _latency_markdown(latency: ServiceLatency) -> list[str]:
    startup = "n/a" if latency.startup_s is None else f"{latency.startup_s:.1f} s"
    rows = [
        ("capture → result (worker's write to `vigil:faces`), every analysed frame", latency.frames),
        ("capture → event (`latency_ms` of recognized/unknown)", latency.events),
    ]
    events = "; ".join(
        f"{event.type} {event.name or '-'} (frame {event.frame}, {event.latency_ms:.0f} ms)"
        for event in latency.event_list
    )
    return [
        f"Service: `vigil run CLIP` in real time at {latency.camera_fps:g} analysed frames/s, "
        f"{latency.workers} worker(s); {latency.frames_analysed} frames analysed in a {latency.wall_s:.1f} s "
        f"run; the reader started {startup} after the service, once the workers had loaded their models.",
        "",
        markdown_grid(
            ("latency", "n", "p50 ms", "p99 ms"),
            [(what, str(value.count), _ms(value.p50_ms), _ms(value.p99_ms)) for what, value in rows],
        ),
        "",
        f"Events: {events or 'none'}.",
    ]


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"
