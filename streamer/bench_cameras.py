"""``vigil bench cameras``: how many concurrent cameras one worker keeps up with, and where its time goes.

Method, in one run:

1. The clip is decoded once and every frame scaled to ``--height`` pixels (aspect kept; the
   default 720 turns hamilton.mp4's 640×360 into 1280×720).
2. Lin-Manuel Miranda, Barack Obama and Joe Biden are enrolled from one photo each in a
   temporary ``VIGIL_HOME`` with its embedded Redis (as ``vigil bench stream`` does).
3. ``--cameras`` N cameras play the clip, camera *k* starting *k*/N of the way into it, so a
   batch holds N different frames. Each tick, one frame per camera goes onto the real frame
   bus (JPEG at ``streamer.bus.jpeg_quality``, as a reader publishes it; not timed), and then
   one real :class:`~streamer.worker.Worker` step takes them as one batch
   (``max_batch`` = N) through everything a worker does: read and JPEG-decode from Redis,
   detect, align + embed, search, and write the results in the transaction that ACKs the
   frames. The step is timed (wall and process CPU seconds); a few ticks warm up first.
4. Where the time goes: the worker's own ``vigil_stage_seconds`` histogram (detect, embed,
   search, publish), the rest of the step being the bus read and JPEG decoding.
5. The models run where ``detector.device``/``embedder.device`` say (``auto``: the GPU when
   there is one). On CUDA the peak GPU memory is recorded.

Left out: decoding the cameras' video (the readers' work, in processes of their own) and
tracking (the tracker's process).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import cv2
import numpy as np

from streamer.bench_setup import (
    PEOPLE,
    check_data,
    decode_clip,
    enroll_people,
    markdown_grid,
    temporary_home,
)
from vigil.config import Settings, load_settings
from vigil.machine import cpu_model
from vigil.streams import StreamEntry, text
from vigil.typing import ImageRGB

if TYPE_CHECKING:
    import redis

    from streamer.analysis import FrameResult
    from streamer.worker import Worker

logger = logging.getLogger(__name__)

DEFAULT_JSON = Path("bench-results/cameras.json")
DEFAULT_CAMERAS = 8
DEFAULT_HEIGHT = 720
DEFAULT_TICKS = 40
WARMUP_TICKS = 3
WORKER_STAGES = ("detect", "embed", "search", "publish")
"""The stages a worker times itself (``vigil_stage_seconds``); "bus" is the rest of a step."""


@dataclass(frozen=True)
class StageTime:
    """One stage's share of the timed steps."""

    stage: str
    seconds: float
    ms_per_batch: float
    share: float


@dataclass(frozen=True)
class CamerasBenchResult:
    """Everything ``vigil bench cameras`` measured, and the conditions it measured under.

    Attributes:
        clip: The video file.
        frame_size: Width and height of the frames as published, in pixels.
        cameras: Concurrent cameras (frames per batch).
        ticks: Timed batches.
        frames: Frames analysed in the timed batches.
        seconds: Wall seconds of the timed worker steps.
        cpu_seconds: Process CPU seconds over the same steps (every thread).
        stages: Where the time went, in step order.
        faces: Faces found on the timed frames.
        names: Frames on which each enrolled person was named.
        device: Where the models ran (``cpu``, or the GPU's name).
        gpu_peak_mib: Peak GPU memory allocated by torch, or None on a CPU.
        torch_threads: ``torch.get_num_threads()``.
        cpu_model: From ``/proc/cpuinfo``.
        cpu_count: Logical CPUs this process may use.
        jpeg_quality: Of the frames on the bus.
        detector: The detector backend (``detector.backend``).
        min_face_size_px: The detector's smallest face.
        embedder_version: Vigil's embedding space.
    """

    clip: str
    frame_size: tuple[int, int]
    cameras: int
    ticks: int
    frames: int
    seconds: float
    cpu_seconds: float
    stages: tuple[StageTime, ...]
    faces: int
    names: dict[str, int]
    device: str
    gpu_peak_mib: float | None
    torch_threads: int
    cpu_model: str
    cpu_count: int
    jpeg_quality: int
    detector: str
    min_face_size_px: int
    embedder_version: str

    @property
    def fps(self) -> float:
        """Analysed frames per wall second, all cameras together."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def cameras_at(self, camera_fps: float) -> float:
        """Cameras analysed at ``camera_fps`` each that this throughput covers."""
        return self.fps / camera_fps

    def to_dict(self) -> dict[str, object]:
        derived = {
            "fps": self.fps,
            "fps_per_camera": self.fps / self.cameras,
            "python": platform.python_version(),
            "method": "one Worker.step per tick on the real bus; stages from vigil_stage_seconds",
        }
        return {**dataclasses.asdict(self), **derived}

    def to_markdown(self) -> str:
        width, height = self.frame_size
        memory = "" if self.gpu_peak_mib is None else f", peak GPU memory {self.gpu_peak_mib:.0f} MiB"
        names = ", ".join(f"{name} on {count}" for name, count in sorted(self.names.items()))
        rows = [
            (stage.stage, f"{stage.ms_per_batch:.1f}", f"{100 * stage.share:.0f} %") for stage in self.stages
        ]
        size = f"{width}×{height}"
        lines = [
            f"## Cameras: {self.cameras} concurrent {size} streams on one worker ({self.device})",
            "",
            f"- clip {self.clip} scaled to {size}, camera k starting k/{self.cameras} into it; "
            f"{self.ticks} timed batches of {self.cameras} frames (JPEG q{self.jpeg_quality} on the bus)",
            f"- {self.device}{memory}; CPU {self.cpu_model}, {self.cpu_count} logical CPUs, "
            f"torch on {self.torch_threads} threads",
            f"- {self.embedder_version}, {self.detector} min face {self.min_face_size_px} px",
            "",
            f"**{self.fps:.1f} frames/s** in all ({self.fps / self.cameras:.1f} per camera): "
            f"{self.cameras_at(5):.1f} cameras at 5 analysed fps, {self.cameras_at(10):.1f} at 10; "
            f"CPU s per frame {self.cpu_seconds / max(self.frames, 1):.3f}. "
            f"{self.faces} faces on {self.frames} frames; frames naming {names or 'nobody'}.",
            "",
            markdown_grid(("stage", "ms per batch", "share"), rows),
        ]
        return "\n".join(lines) + "\n"


def run_cameras_bench(
    clip: Path,
    people_dir: Path,
    settings: Settings | None = None,
    *,
    cameras: int = DEFAULT_CAMERAS,
    height: int = DEFAULT_HEIGHT,
    ticks: int = DEFAULT_TICKS,
) -> CamerasBenchResult:
    """Run one worker on ``cameras`` concurrent copies of the clip (see the module's method).

    Raises:
        ValueError: ``cameras``, ``height`` or ``ticks`` below 1.
        DatasetError: The clip or a photo is missing.
        StreamError: The clip cannot be decoded.
    """
    for name, value in (("cameras", cameras), ("height", height), ("ticks", ticks)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    photos = check_data(clip, people_dir)
    settings = load_settings() if settings is None else settings
    import torch

    from streamer.worker import Worker
    from vigil.models.pipeline import FacePipeline

    frames = scale_frames(decode_clip(clip, None), height)
    with temporary_home(_for_cameras(settings, cameras)) as (bench_settings, client):
        pipeline = FacePipeline.from_settings(bench_settings)
        pipeline.load()
        worker = Worker(client, bench_settings, pipeline)
        enroll_people(worker.identifier, bench_settings, photos)
        worker.bus.ensure_group()
        cuda = pipeline.detector.device.type == "cuda"
        for tick in range(WARMUP_TICKS):
            _publish_tick(worker, frames, cameras, tick)
            worker.step()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        stages_before = _stage_seconds()
        first_result = _newest_result_id(client, bench_settings)
        seconds = cpu_seconds = 0.0
        for tick in range(WARMUP_TICKS, WARMUP_TICKS + ticks):
            _publish_tick(worker, frames, cameras, tick)
            started, cpu_started = time.perf_counter(), time.process_time()
            done = 0
            while done < cameras:  # a step may take fewer frames when Redis hands them over in parts
                done += worker.step()
            seconds += time.perf_counter() - started
            cpu_seconds += time.process_time() - cpu_started
        stage_seconds = {stage: spent - stages_before[stage] for stage, spent in _stage_seconds().items()}
        results = _results_after(client, bench_settings, first_result)
        device = torch.cuda.get_device_name(pipeline.detector.device) if cuda else "cpu"
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    names = {name: 0 for name in PEOPLE}
    faces = 0
    for result in results:
        faces += len(result.faces)
        for name in {face.name for face in result.faces if face.name is not None}:
            names[name] = names.get(name, 0) + 1
    frame_height, frame_width = frames[0].shape[:2]
    return CamerasBenchResult(
        clip=str(clip),
        frame_size=(frame_width, frame_height),
        cameras=cameras,
        ticks=ticks,
        frames=cameras * ticks,
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        stages=stage_shares(stage_seconds, seconds, ticks),
        faces=faces,
        names=names,
        device=device,
        gpu_peak_mib=peak,
        torch_threads=torch.get_num_threads(),
        cpu_model=cpu_model(),
        cpu_count=len(os.sched_getaffinity(0)),
        jpeg_quality=bench_settings.streamer.bus.jpeg_quality,
        detector=pipeline.detector.name,
        min_face_size_px=bench_settings.detector.min_face_size_px,
        embedder_version=pipeline.embedder.version,
    )


def scale_frames(frames: Sequence[ImageRGB], height: int) -> list[ImageRGB]:
    """Each frame resized to ``height`` rows, aspect kept (area when shrinking, cubic when growing)."""
    source_height, source_width = frames[0].shape[:2]
    if source_height == height:
        return list(frames)
    width = round(source_width * height / source_height)
    interpolation = cv2.INTER_AREA if height < source_height else cv2.INTER_CUBIC
    return [
        np.asarray(cv2.resize(frame, (width, height), interpolation=interpolation), dtype=np.uint8)
        for frame in frames
    ]


def stage_shares(stage_seconds: dict[str, float], total_s: float, batches: int) -> tuple[StageTime, ...]:
    """The worker's stages and the rest of the step ("bus": read and decode), as time per batch and share."""
    spent = {"bus": max(total_s - sum(stage_seconds.values()), 0.0), **stage_seconds}
    return tuple(
        StageTime(stage, seconds, 1000 * seconds / batches, seconds / total_s if total_s > 0 else 0.0)
        for stage, seconds in spent.items()
    )


# ----------------------------------------------------------------------------- private helpers


def _for_cameras(settings: Settings, cameras: int) -> Settings:
    """The settings with a worker batch of one frame per camera and room on the bus for a tick."""
    streamer = settings.streamer
    workers = streamer.workers.model_copy(update={"max_batch": cameras})
    bus = streamer.bus.model_copy(update={"max_frames": max(streamer.bus.max_frames, 2 * cameras)})
    return settings.model_copy(
        update={"streamer": streamer.model_copy(update={"workers": workers, "bus": bus})}
    )


def _publish_tick(worker: Worker, frames: Sequence[ImageRGB], cameras: int, tick: int) -> None:
    """One frame per camera on the bus, as the cameras' readers would publish them."""
    for camera in range(cameras):
        number = (tick + camera * len(frames) // cameras) % len(frames)
        worker.bus.publish(f"cam{camera}", tick, time.time(), frames[number])


def _stage_seconds() -> dict[str, float]:
    """Seconds so far in each worker stage, from this process's ``vigil_stage_seconds`` histogram."""
    from prometheus_client import REGISTRY

    return {
        stage: REGISTRY.get_sample_value("vigil_stage_seconds_sum", {"stage": stage}) or 0.0
        for stage in WORKER_STAGES
    }


def _newest_result_id(client: redis.Redis, settings: Settings) -> str:
    newest = cast(list[StreamEntry], client.xrevrange(settings.streamer.bus.faces_stream, count=1))
    return text(newest[0][0]) if newest else "0-0"


def _results_after(client: redis.Redis, settings: Settings, after: str) -> list[FrameResult]:
    """The results the worker wrote after stream id ``after``."""
    from streamer.analysis import FrameResult

    entries = cast(list[StreamEntry], client.xrange(settings.streamer.bus.faces_stream, min=f"({after}"))
    return [FrameResult.from_fields(fields) for _, fields in entries]
