"""Workers: batches of frames from the bus → detect → align → embed → search → results.

A worker is stateless: any number of them, on any machine, join the bus's consumer group.
It batches frames across cameras (up to ``workers.max_batch``, waiting at most
``workers.max_wait_ms`` for a batch to fill), runs the face pipeline and the gallery
search on the whole batch, and writes one ``FrameResult`` per frame to the results stream
*in the same transaction* that acknowledges the frames. So a frame's result is written
exactly once: a worker killed mid-batch leaves its frames pending, and another worker
re-claims them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import cast

import redis

from indexer.calibration import RuleOverride, Thresholds
from indexer.gallery import Gallery
from indexer.identify import Identification, Identifier
from streamer import metrics
from streamer.analysis import CHIPS_TTL_S, FaceResult, FrameResult, chip_jpeg, chips_key_for, face_crop_jpeg
from streamer.bus import BusFrame, FrameBus
from vigil.config import Settings
from vigil.errors import VigilError
from vigil.models.attribute_tail import tail_aligner
from vigil.models.pipeline import FacePipeline
from vigil.stop import StopFlag
from vigil.streams import redis_errors

logger = logging.getLogger(__name__)

# How long one read waits for the first frame of a batch; also how often stop() is noticed.
_IDLE_BLOCK_MS = 500
WORKERS_KEY = "vigil:workers"
HEARTBEAT_EVERY_S = 2.0


def consumer_name() -> str:
    """Unique per process and machine, so pending frames can be traced to their worker."""
    return f"{socket.gethostname()}-{os.getpid()}"


AUTO_CPU_WORKERS_MAX = 4
"""``workers.count: 0`` on a CPU starts one worker per core, up to this many (each holds its models)."""


def plan_workers(settings: Settings) -> Settings:
    """The settings with ``workers.count`` and ``workers.torch_threads`` decided where they are 0 (auto).

    Raises:
        ConfigError: The detector asks for CUDA on a machine without it.
    """
    from vigil.models.device import resolve_device

    config = settings.streamer.workers
    cores = len(os.sched_getaffinity(0))
    count = config.count
    if count == 0:
        on_gpu = resolve_device(settings.detector.device).type != "cpu"
        count = 1 if on_gpu else min(cores, AUTO_CPU_WORKERS_MAX)
    threads = config.torch_threads or max(1, cores // count)
    workers = config.model_copy(update={"count": count, "torch_threads": threads})
    return settings.model_copy(update={"streamer": settings.streamer.model_copy(update={"workers": workers})})


def ready_workers(client: redis.Redis, since: float) -> int:
    """Workers (on any machine) whose latest heartbeat is at or after ``since`` (Unix seconds)."""
    with redis_errors():
        beats = cast(dict[bytes, bytes], client.hgetall(WORKERS_KEY))
    return sum(1 for beat in beats.values() if float(json.loads(beat).get("seen_at", 0)) >= since)


class Worker:
    """One worker's loop over the frame bus.

    Example:
        >>> worker = Worker(client, settings, FacePipeline.from_settings(settings))
        >>> worker.run(stop_event)
    """

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        pipeline: FacePipeline,
        frames_client: redis.Redis | None = None,
    ) -> None:
        self._client = client
        self.config = settings.streamer
        # The frame bus may live on a server of its own (frames are never persisted): then a
        # batch's results and its frames' acknowledgement cannot share one transaction.
        self._bus_apart = frames_client is not None and frames_client is not client
        self.bus = FrameBus(frames_client if frames_client is not None else client, settings.streamer.bus)
        self.pipeline = pipeline
        self.identifier = Identifier.from_settings(Gallery(client), pipeline, settings)
        # Faces travel with a small JPEG only where the user opted in to keeping one: every face for
        # event thumbnails, unmatched faces for kept unknowns, every face of the cameras whose tracks
        # get an expression. Otherwise nothing is cropped.
        self._crop_all = settings.streamer.events.thumbnails
        self._crop_cameras = {c.name for c in settings.streamer.cameras if "expression" in c.analysis}
        self._crop_unknowns = settings.indexer.unknowns.keep and settings.indexer.unknowns.keep_images
        # The fine-tuned age/gender model reads aligned chips; the tracker runs it once per track.
        tracker = settings.streamer.tracker
        self._send_chips = tracker.attributes and tracker.attribute_model == "fine_tuned"
        self._settings = settings
        self._chip_aligner = tail_aligner(settings.aligner)
        # Cameras with their own match_threshold / match_margin; the others use the calibrated rule.
        self._overrides = {
            camera.name: RuleOverride(
                camera.match_threshold, camera.match_margin, f"camera {camera.name}'s override"
            )
            for camera in settings.streamer.cameras
            if camera.match_threshold is not None or camera.match_margin is not None
        }
        self.consumer = consumer_name()
        self._last_reclaim = 0.0
        self._last_heartbeat = 0.0
        self.frames_done = 0
        self._started = False

    def start(self) -> None:
        """Load the models, check the gallery and join the bus: all that comes before the first frame.

        Raises:
            GalleryError: The gallery holds templates of other embedders only (see
                ``Identifier.check_gallery``): restarting the worker cannot help.
            ModelLoadError: ``attribute_model: fine_tuned`` and no usable fine-tuned model is
                promoted (the tracker would give every event null attributes).
        """
        if self._send_chips:  # local files first, then the gallery in Redis
            self._check_attribute_tail()
        self.pipeline.load()
        self.identifier.check_gallery()
        self.bus.ensure_group()
        self._started = True

    def _check_attribute_tail(self) -> None:
        from vigil.models.attribute_tail import load_attribute_tail, load_tail_backbone

        backbone = load_tail_backbone(self._settings.cache_dir)
        _, version = load_attribute_tail(self._settings.home, backbone)
        logger.info("workers send face chips for the fine-tuned attribute model %s", version)

    def run(self, stop: StopFlag) -> None:
        """Process batches until ``stop`` is set (after :meth:`start`, unless it was called already)."""
        if not self._started:
            self.start()
        logger.info("worker %s ready", self.consumer)
        self._heartbeat()  # at once: a supervisor holding its readers waits for this
        try:
            while not stop.is_set():
                self.step()
                self._heartbeat()
        finally:
            with contextlib.suppress(VigilError), redis_errors():
                self._client.hdel(WORKERS_KEY, self.consumer)

    def _heartbeat(self) -> None:
        """Say who is working and on what gallery, for `vigil status` (entries of dead workers go stale)."""
        now = time.time()
        if now - self._last_heartbeat < HEARTBEAT_EVERY_S:
            return
        self._last_heartbeat = now
        beat = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "seen_at": now,
            "frames": self.frames_done,
            "gallery_version": self.identifier.gallery_version,
            "templates": self.identifier.indexed_templates,
            # Which models it runs: a worker node with another backend matches other templates.
            "detector": self.pipeline.detector.name,
            "embedder": self.identifier.space_version,
        }
        with redis_errors():
            self._client.hset(WORKERS_KEY, self.consumer, json.dumps(beat))

    def step(self) -> int:
        """Process one batch; returns how many frames (and end markers) it held."""
        frames = self._next_batch()
        if frames:
            self._process(frames)
            self.frames_done += len(frames)
        return len(frames)

    def _next_batch(self) -> list[BusFrame]:
        config = self.config.workers
        frames: list[BusFrame] = []
        now = time.monotonic()
        if now - self._last_reclaim > self.config.bus.claim_idle_ms / 2000:
            self._last_reclaim = now
            frames, stale = self.bus.reclaim(self.consumer, config.max_batch)
            for frame in stale:
                metrics.FRAMES_DROPPED.labels(camera=frame.camera, reason="stale").inc()
        if not frames:
            frames = self.bus.read(self.consumer, config.max_batch, block_ms=_IDLE_BLOCK_MS)
        deadline = time.monotonic() + config.max_wait_ms / 1000
        while frames and len(frames) < config.max_batch:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                break
            more = self.bus.read(self.consumer, config.max_batch - len(frames), block_ms=remaining_ms)
            if not more:
                break
            frames += more
        return frames

    def _process(self, frames: list[BusFrame]) -> None:
        pictures = [frame for frame in frames if frame.image is not None]
        started = time.perf_counter()
        detections = self.pipeline.detector.detect(
            [frame.image for frame in pictures if frame.image is not None]
        )
        detected = time.perf_counter()
        faces = self.pipeline.embed_detections(
            [f.image for f in pictures if f.image is not None],
            detections,
            # The bus hands out each camera's frames in order: a face that has not moved since an
            # earlier frame of its camera in this batch is embedded once.
            [frame.camera for frame in pictures],
        )
        embedded = time.perf_counter()
        named = self.identifier.name_faces(
            [face for frame_faces in faces for face in frame_faces],
            [
                self._overrides.get(frame.camera)
                for frame, frame_faces in zip(pictures, faces, strict=True)
                for _ in frame_faces
            ],
        )
        # The rules name_faces decided with (its one refresh sized the calibrated rule), for every
        # camera of the batch, those whose frames held no face too.
        rules = {
            camera: self.identifier.rule(self._overrides.get(camera)) for camera in {f.camera for f in frames}
        }
        searched = time.perf_counter()
        results = self._results(frames, pictures, [len(frame_faces) for frame_faces in faces], named, rules)
        self._publish(results, [frame.entry_id for frame in frames])
        published = time.perf_counter()
        metrics.STAGE_SECONDS.labels(stage="detect").observe(detected - started)
        metrics.STAGE_SECONDS.labels(stage="embed").observe(embedded - detected)
        metrics.STAGE_SECONDS.labels(stage="search").observe(searched - embedded)
        metrics.STAGE_SECONDS.labels(stage="publish").observe(published - searched)
        metrics.BATCH_SIZE.observe(len(pictures))
        for frame, frame_faces in zip(pictures, faces, strict=True):
            metrics.FACES_REUSED.labels(camera=frame.camera).inc(sum(face.reused for face in frame_faces))
        metrics.INDEX_TEMPLATES.set(self.identifier.indexed_templates)
        metrics.GALLERY_VERSION.set(self.identifier.gallery_version or 0)
        for result in results:
            if not result.end_of_stream:
                metrics.FRAMES_PROCESSED.labels(camera=result.camera).inc()
                metrics.FACES_DETECTED.labels(camera=result.camera).inc(len(result.faces))

    def _results(
        self,
        frames: Sequence[BusFrame],
        pictures: Sequence[BusFrame],
        counts: Sequence[int],
        named: Sequence[Identification],
        rules: dict[str, Thresholds],
    ) -> list[FrameResult]:
        faces_of: dict[str, list[FaceResult]] = {}
        offset = 0
        for frame, count in zip(pictures, counts, strict=True):
            faces_of[frame.entry_id] = [
                FaceResult.from_identification(n, self._face_crop(frame, n), self._face_chip(frame, n))
                for n in named[offset : offset + count]
            ]
            offset += count
        return [
            FrameResult(
                camera=frame.camera,
                number=frame.number,
                captured_at=frame.captured_at,
                faces=faces_of.get(frame.entry_id, []),
                end_of_stream=frame.end_of_stream,
                threshold=rules[frame.camera].threshold,
                margin=rules[frame.camera].margin,
                calibration=rules[frame.camera].source,
                embedder_version=self.identifier.space_version,
                read_at=frame.read_at,
            )
            for frame in frames
        ]

    def _face_crop(self, frame: BusFrame, named: Identification) -> bytes | None:
        """The face as a small JPEG: every face for ``streamer.events.thumbnails`` and for cameras with
        ``expression`` analysis, unmatched faces for ``indexer.unknowns.keep_images``, else None."""
        wanted = (
            self._crop_all
            or frame.camera in self._crop_cameras
            or (self._crop_unknowns and named.decision.identity_id is None)
        )
        if not wanted or frame.image is None:
            return None
        return face_crop_jpeg(frame.image, named.face.box_xyxy.tolist())

    def _stash_chips(self, pipe: redis.client.Pipeline, result: FrameResult) -> FrameResult:
        """Write the result's chips (if any) under a key of their own that expires; name it in the result."""
        chips = {str(index): face.chip_jpeg for index, face in enumerate(result.faces) if face.chip_jpeg}
        if not chips:
            return result
        key = chips_key_for(self.config.bus.faces_stream)
        pipe.hset(key, mapping=chips)  # type: ignore[arg-type]
        pipe.expire(key, CHIPS_TTL_S)
        return dataclasses.replace(result, chips_key=key)

    def _face_chip(self, frame: BusFrame, named: Identification) -> bytes | None:
        """The face's aligned chip as JPEG with ``attribute_model: fine_tuned``, else None."""
        if not self._send_chips or frame.image is None:
            return None
        return chip_jpeg(self._chip_aligner.align(frame.image, named.face.landmarks[None])[0])

    def _publish(self, results: list[FrameResult], entry_ids: list[str]) -> None:
        with redis_errors(), self._client.pipeline(transaction=True) as pipe:
            for result in results:
                result = self._stash_chips(pipe, result)
                pipe.xadd(
                    self.config.bus.faces_stream,
                    result.to_fields(),  # type: ignore[arg-type]
                    maxlen=self.config.bus.max_results,
                    approximate=True,
                )
            if not self._bus_apart:
                self.bus.ack_in(pipe, entry_ids)
            pipe.execute()
        if self._bus_apart:
            # Results first, then the acknowledgement: a crash between the two leaves the frames
            # pending, to be analysed again, and the tracker drops the duplicate results.
            self.bus.ack(entry_ids)
