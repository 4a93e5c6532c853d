"""Streamer settings: cameras, the frame bus, workers, tracks, events and metrics."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from vigil.config.base import VigilModel
from vigil.config.embedder import backend_of

# Longest any record is kept: 10 years, more than any retention a site should choose; the bound
# is there so that `1e20` or `.inf` is refused instead of being taken as "forever".
MAX_RETENTION_S = 10 * 365 * 24 * 3600.0
# Camera names appear in Redis keys, channel names and metric labels.
CAMERA_NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
FaceAnalysis = Literal["expression"]
"""What ``streamer.cameras[].analysis`` may ask for."""


class CameraConfig(VigilModel):
    """One video source."""

    name: str = Field(
        pattern=CAMERA_NAME_PATTERN,
        max_length=64,
        description="Unique camera name (letters, digits, `_`, `-`, `.`); used in events, keys, metrics.",
    )
    source: str = Field(
        min_length=1,
        description=(
            "What to read: an RTSP/HTTP(S) URL, a video file path, or a webcam index (`0`, `1`, ...)."
        ),
    )
    fps: float = Field(
        5.0,
        gt=0.0,
        le=120.0,
        description=(
            "Frames per second to analyse. Frames are sampled down to this rate, never queued: "
            "live video wants the newest frame."
        ),
    )
    realtime: bool = Field(
        True,
        description=(
            "Files only: play at the file's native rate, like a camera. Off (`--as-fast-as-possible`): "
            "read as fast as the workers keep up, for batch jobs. Live sources are always real time."
        ),
    )
    open_timeout_s: float = Field(
        10.0, gt=0.0, le=300.0, description="Give up opening the source after this."
    )
    read_timeout_s: float = Field(
        10.0, gt=0.0, le=300.0, description="A source that delivers no frame for this long is reconnected."
    )
    reconnect_initial_s: float = Field(
        0.5, gt=0.0, le=60.0, description="First back-off before reconnecting a lost source."
    )
    reconnect_max_s: float = Field(
        30.0, gt=0.0, le=3600.0, description="Longest back-off; the delay doubles up to this, with jitter."
    )
    max_reconnects: int | None = Field(
        None,
        ge=0,
        description=(
            "Consecutive failed attempts after which the source is marked failed. Unset: keep trying "
            "(live sources). A file that cannot be opened or decoded fails at once."
        ),
    )
    match_threshold: float | None = Field(
        None,
        ge=-1.0,
        le=1.0,
        description=(
            "This camera's similarity threshold, over the calibrated one (e.g. stricter at a door). "
            "Workers on other machines apply it only if their configuration lists the camera too."
        ),
    )
    match_margin: float | None = Field(
        None,
        ge=0.0,
        le=2.0,
        description="This camera's required lead over the runner-up, over the calibrated one.",
    )
    analysis: list[FaceAnalysis] = Field(
        default_factory=list,
        description=(
            "Face analyses beyond identity, opt-in per camera. `expression`: the seven basic facial "
            "expressions, once per track from its best faces (the workers then put a small face crop "
            "on the results stream for this camera, kept only as long as its last "
            "`streamer.bus.max_results` frame results; the tracker keeps no crop beyond the expression "
            "unless images are opted in; the weights come from `vigil models install-pack`). "
            "About 66 % right on FER-2013; how a face looks, not what anyone feels. Empty: none, at no cost."
        ),
    )

    @model_validator(mode="after")
    def _backoff_order(self) -> CameraConfig:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be at least reconnect_initial_s")
        return self


class BusConfig(VigilModel):
    """The frame bus: a Redis Stream read by a consumer group of workers."""

    stream: str = Field("vigil:frames", min_length=1, description="Redis Stream the readers write frames to.")
    group: str = Field("workers", min_length=1, description="Consumer group of the workers.")
    max_frames: int = Field(
        64,
        ge=1,
        le=100_000,
        description=(
            "Bound on the stream's length. Under back-pressure the oldest frames are dropped (and "
            "counted): live video wants the newest frame."
        ),
    )
    jpeg_quality: int = Field(90, ge=10, le=100, description="JPEG quality of frames on the bus.")
    stale_after_s: float = Field(
        10.0,
        gt=0.0,
        le=3600.0,
        description=(
            "A frame left pending by a crashed worker is re-claimed by another one if it is younger "
            "than this, else dropped as stale (never a frame of a file read as fast as possible)."
        ),
    )
    claim_idle_ms: int = Field(
        3000,
        ge=100,
        le=3_600_000,
        description="How long a frame may sit pending with a worker before others re-claim it.",
    )
    faces_stream: str = Field(
        "vigil:faces",
        min_length=1,
        description="Redis Stream of the workers' per-frame results, read by the tracker in frame order.",
    )
    max_results: int = Field(
        10_000, ge=100, description="Bound on the results stream's length (approximate)."
    )


class WorkerConfig(VigilModel):
    """Detection + embedding + search workers."""

    count: int = Field(
        0,
        ge=0,
        le=64,
        description=(
            "Worker processes on this machine (`--workers`); 0: one per CPU core (at most 4) when the "
            "models run on the CPU, one when they run on a GPU. On a CPU, workers on one thread each "
            "analyse more frames per second than one worker on every core (BENCHMARKS.md)."
        ),
    )
    torch_threads: int = Field(
        0,
        ge=0,
        le=256,
        description="CPU threads of each worker's torch; 0: the machine's cores shared among its workers.",
    )
    max_batch: int = Field(8, ge=1, le=256, description="Most frames analysed in one batch (across cameras).")
    max_wait_ms: int = Field(
        20, ge=0, le=5000, description="Longest wait for a batch to fill once its first frame has arrived."
    )
    readers_wait_s: float = Field(
        0.0,
        ge=0.0,
        le=600.0,
        description=(
            "At start-up, hold the camera readers until every worker of `vigil run` has loaded its models, "
            "for at most this many seconds (0: start them at once). For files played in real time, so "
            "their first seconds are not over before the first frame is analysed."
        ),
    )


# Each embedder has its own cosine scale: the same face in frames 0.2 s apart (5 analysed fps,
# measured on hamilton.mp4) against different people side by side.
TRACK_SIMILARITY_BY_EMBEDDER = {"dlib_resnet": 0.93, "sface": 0.5}
DEFAULT_TRACK_SIMILARITY = 0.93  # other embedders (facenet, fine-tuned heads' spaces): the strict one


class TrackerConfig(VigilModel):
    """Associating faces across frames into tracks, and deciding one identity per visit."""

    attributes: bool = Field(
        True,
        description=(
            "Estimate age and gender once per track (from its recent faces) and put them in its events, "
            "with the promoted attribute head or the one Vigil ships."
        ),
    )
    attribute_model: Literal["head", "fine_tuned"] = Field(
        "head",
        description=(
            "Which model gives age and gender. `head`: a small head on the embeddings, no cost per "
            "face (UTKFace held out: age MAE 6.9 years with SFace, 6.2 with dlib). `fine_tuned`: the "
            "promoted `attribute_tail` artifact, a fine-tuned copy of dlib's ResNet's last blocks "
            "(age MAE 5.0 years, gender 93 %, whatever the embedder), made by `vigil train attributes "
            "--fine-tune-blocks 4`: workers then write each face's 150 px chip (~5 KB JPEG; a face "
            "image) to Redis beside its result, under a key that expires after 120 s and that the "
            "tracker deletes once read; the tracker runs the copy once per track on the track's 3 best "
            "chips, which delays each track's first event by ~0.3 s on 2 CPU cores (BENCHMARKS.md). "
            "The service refuses to start when none is promoted."
        ),
    )

    min_iou: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="Box overlap (IoU) that counts as the same place; other faces must be within two widths.",
    )
    min_similarity: float | None = Field(
        None,
        ge=-1.0,
        le=1.0,
        description=(
            "Smallest cosine similarity to the track's recent faces for a face to continue it. Unset: "
            "the embedder's own value, 0.93 for dlib (the same face in consecutive frames scores "
            "0.95-0.99, different people often 0.85-0.9) and 0.5 for SFace (0.62 or more for 95 % of "
            "faces 0.2 s apart in hamilton.mp4; 99 % of different people side by side below 0.49)."
        ),
    )
    max_gap_s: float = Field(
        1.5, gt=0.0, le=60.0, description="A track not seen for this long (capture time) has ended."
    )
    min_votes: int = Field(
        2,
        ge=1,
        le=100,
        description=(
            "Frames that must name the same person (above threshold) before a `recognized` event; "
            "1 reports on the first frame."
        ),
    )
    unknown_after_frames: int = Field(
        8, ge=1, le=1000, description="Frames a track must stay unmatched before an `unknown` event."
    )
    cooldown_s: float = Field(
        30.0,
        ge=0.0,
        le=86_400.0,
        description=(
            "After a `recognized` event for a person on a camera, new tracks of the same person on "
            "that camera within this time are the same visit and publish no new event."
        ),
    )
    reorder_window_ms: int = Field(
        500,
        ge=0,
        le=60_000,
        description=(
            "Frames of a camera are tracked in order; a missing frame (dropped under back-pressure) is "
            "waited for at most this long."
        ),
    )

    def similarity_for(self, embedder_version: str) -> float:
        """``min_similarity``, or the default for the embedder that made ``embedder_version``."""
        if self.min_similarity is not None:
            return self.min_similarity
        if "+head-" in embedder_version:  # a fine-tuned head's space has a scale of its own
            return DEFAULT_TRACK_SIMILARITY
        backend = backend_of(embedder_version)
        return TRACK_SIMILARITY_BY_EMBEDDER.get(backend or "", DEFAULT_TRACK_SIMILARITY)


class EventsConfig(VigilModel):
    """Where recognition events go."""

    stream: str = Field("vigil:events", min_length=1, description="Redis Stream of all events.")
    max_events: int = Field(
        100_000, ge=100, description="Events kept in the stream (approximate; the oldest are trimmed)."
    )
    max_age_s: float | None = Field(
        7 * 24 * 3600.0,
        gt=0.0,
        le=MAX_RETENTION_S,
        description="Events older than this are trimmed (at most 10 years). Unset: by length only.",
    )
    channel_prefix: str = Field(
        "vigil:events",
        min_length=1,
        description="Pub/sub channels: `{prefix}:camera:{camera}` and `{prefix}:identity:{identity_id}`.",
    )
    thumbnails: bool = Field(
        False,
        description=(
            "Keep a small JPEG of the face behind each event (at most 128 px a side, in Redis under "
            "`{stream}:thumb:{event_id}`, expiring after `max_age_s` like the events), for "
            "`GET /api/v1/events/{event_id}/thumbnail`. Erasing a person deletes the thumbnails of every "
            "track matched to them. While on, workers attach such a crop to every face they publish, so "
            "the results stream's last `streamer.bus.max_results` results hold face images too (those "
            "naming a person go with their erasure). Needs `max_age_s`. Off (the default): no image of "
            "an event's face is stored or sent (privacy), and workers crop no matched face."
        ),
    )

    @model_validator(mode="after")
    def _thumbnails_expire(self) -> EventsConfig:
        # A face image kept "by length only" could outlive any retention a site promised.
        if self.thumbnails and self.max_age_s is None:
            raise ValueError("thumbnails need max_age_s: a face image must expire")
        return self


class MetricsConfig(VigilModel):
    """Prometheus metrics."""

    enabled: bool = Field(True, description="Serve Prometheus metrics.")
    host: str = Field("127.0.0.1", description="Address to listen on (`0.0.0.0` to scrape from elsewhere).")
    port: int = Field(
        9108, ge=0, le=65535, description="Port of `/metrics` (all processes of the service, aggregated)."
    )


class StreamerConfig(VigilModel):
    """The recognition service (`vigil run`)."""

    cameras: list[CameraConfig] = Field(default_factory=list, description="Video sources to watch.")
    bus: BusConfig = Field(default_factory=BusConfig)
    workers: WorkerConfig = Field(default_factory=WorkerConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)

    @field_validator("cameras")
    @classmethod
    def _unique_names(cls, cameras: list[CameraConfig]) -> list[CameraConfig]:
        names = [camera.name for camera in cameras]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"camera names must be unique; repeated: {', '.join(duplicates)}")
        return cameras
