"""Recognition events: the schema, publishing to Redis, and reading them back.

Every event is one JSON object (``Event``), versioned by ``schema_version``. It is
appended to the Redis Stream ``events.stream`` (the durable record, trimmed by length and
age) and published on two pub/sub channels, ``{prefix}:camera:{camera}`` and, when a
person is named, ``{prefix}:identity:{identity_id}``, in one transaction. Readers that must
not miss anything read the stream (``read_events``, ``follow_events``); pub/sub is for
light-weight listeners. The schema is documented in ``docs/events.md`` and
``docs/events.schema.json`` (generated from this model by ``vigil events --schema``).

Event ids follow from the track and the event type (``event_id_for``), and track ids never
repeat, so an event replayed after a crash carries the id it had: consumers that see an id
twice can drop the second.
"""

from __future__ import annotations

import enum
import logging
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Literal, cast

import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streamer import metrics
from vigil.config.streamer import EventsConfig
from vigil.errors import VigilError
from vigil.stop import StopFlag
from vigil.streams import StreamEntry, StreamResponse, redis_errors, text

logger = logging.getLogger(__name__)

EVENT_SCHEMA_VERSION = 1
# Namespace of the uuid5 event ids (``event_id_for``): a fixed, random uuid of Vigil's own.
_EVENT_ID_NAMESPACE = uuid.UUID("5b0f3c1e-8a4d-4f2e-9c61-3d7a2e9b8f40")
# Redis stream ids are "<milliseconds>-<sequence>".
_FIRST_ID = "0-0"
_STREAM_ID = re.compile(r"\d+-\d+")
_STREAM_ID_PART_LIMIT = 2**64


class EventType(enum.StrEnum):
    RECOGNIZED = "recognized"
    UNKNOWN = "unknown"
    TRACK_ENDED = "track_ended"


class EventAttributes(BaseModel):
    """Age and gender of the track's person, from its best faces (``vigil.models.attributes``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    age: float = Field(description="Estimated age in years.")
    age_range: list[int] = Field(min_length=2, max_length=2, description="Plausible ages [low, high].")
    gender: Literal["male", "female"] = Field(description="The more probable of the two.")
    gender_confidence: float = Field(
        ge=0.5,
        le=1.0,
        description=(
            "Its probability; at most 0.7 when the estimated age is under 16, because a child's "
            "gender is right only about 70 % of the time."
        ),
    )


class EventPose(BaseModel):
    """Head pose of the event's face in degrees, relative to the line of sight (``head_pose``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    yaw: float = Field(description="Turn left/right in degrees; positive: to the subject's left.")
    pitch: float = Field(description="Nod in degrees; positive: looking up.")
    roll: float = Field(description="In-image tilt in degrees; positive: counter-clockwise in the image.")


ExpressionLabel = Literal["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
"""``vigil.models.expression.LABELS``, spelled out so that events need no torch."""


class EventExpression(BaseModel):
    """How the track's face looks, from its best faces (``vigil.models.expression``, FER-2013's labels)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: ExpressionLabel = Field(description="The most probable expression.")
    probabilities: dict[ExpressionLabel, float] = Field(
        description="Each of the seven expressions' probability (0-1, summing to 1), averaged over the faces."
    )


class Event(BaseModel):
    """One recognition event (schema version 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(EVENT_SCHEMA_VERSION, description="Version of this schema.")
    event_id: str = Field(
        default_factory=lambda: uuid.uuid4().hex,
        description=(
            "Unique id (32 hex digits): a uuid5 of the track and the event type, so an event "
            "replayed after a crash keeps its id and a consumer can drop the repeat."
        ),
    )
    type: EventType = Field(
        description=(
            "`recognized`: a track was named (once per visit); `unknown`: a track stayed unmatched; "
            "`track_ended`: a track was last seen `duration_s` after it began."
        )
    )
    captured_at: str = Field(description="Capture time of the frame behind the event (ISO-8601, UTC).")
    camera: str = Field(description="Camera name from the configuration.")
    track_id: str = Field(description="The face track, unique per run and camera.")
    identity_id: str | None = Field(description="Gallery id of the person, or null when unknown.")
    name: str | None = Field(description="Display name of the person, or null when unknown.")
    score: float | None = Field(
        description=(
            "Cosine similarity to the person's best template (best of the track); null with an empty gallery."
        )
    )
    threshold: float = Field(description="Similarity threshold in force for the decision.")
    margin: float = Field(description="Required lead over the second-best person in force.")
    box: list[float] = Field(min_length=4, max_length=4, description="Face box x1, y1, x2, y2 in pixels.")
    landmarks: list[list[float]] = Field(
        description="Eyes, nose, mouth corners as [x, y] pixels, left to right as seen in the image."
    )
    pose: EventPose | None = Field(
        None,
        description=(
            "Head pose of the face of `box` and `landmarks`, from those 5 points (null when they are "
            "degenerate or the face too small). Mean error ~2-3 degrees on synthetic faces (BENCHMARKS.md)."
        ),
    )
    frame: int = Field(ge=0, description="Frame number (sampled frames of the camera, from 0).")
    embedder_version: str = Field(
        description="Embedding space of the face and the gallery it was matched in."
    )
    calibration: str = Field(
        description="Where the thresholds came from (calibration id and file, or configuration)."
    )
    latency_ms: float = Field(description="Capture to publication, in milliseconds.")
    track_frames: int = Field(ge=1, description="Frames in the track so far.")
    duration_s: float | None = Field(None, description="track_ended: first to last sighting, in seconds.")
    attributes: EventAttributes | None = Field(
        None,
        description=(
            "Age and gender, computed once per track: by the attribute head from its recent faces' "
            "embeddings, or with `streamer.tracker.attribute_model: fine_tuned` by the fine-tuned model "
            "from its 3 best faces (null when `streamer.tracker.attributes` is off or no model is available)."
        ),
    )
    expression: EventExpression | None = Field(
        None,
        description=(
            "Facial expression, computed once per track from up to 3 of its best faces, for cameras "
            "with `expression` in `analysis` (null otherwise, for faces too small, or without the "
            "weights). About 66 % right on FER-2013: how a face looks, not what anyone feels."
        ),
    )

    def to_json(self) -> str:
        return self.model_dump_json()


def event_json_schema() -> dict[str, object]:
    """The JSON Schema of ``Event`` (what ``docs/events.schema.json`` holds)."""
    schema = Event.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://github.com/vigil/vigil/docs/events.schema.json#v{EVENT_SCHEMA_VERSION}"
    return schema


def event_id_for(track_id: str, kind: EventType) -> str:
    """The id of a track's event of type ``kind``: the same every time (a track has one of each)."""
    return uuid.uuid5(_EVENT_ID_NAMESPACE, f"{track_id}/{kind.value}").hex


def iso_time(timestamp: float) -> str:
    """Unix seconds as ISO-8601 UTC with milliseconds."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


class EventPublisher:
    """Appends events to the stream and announces them on pub/sub, one transaction each."""

    def __init__(self, client: redis.Redis, config: EventsConfig) -> None:
        self._client = client
        self.config = config
        self._last_trim = 0.0

    def camera_channel(self, camera: str) -> str:
        return f"{self.config.channel_prefix}:camera:{camera}"

    def identity_channel(self, identity_id: str) -> str:
        return f"{self.config.channel_prefix}:identity:{identity_id}"

    def publish(self, event: Event) -> str:
        """Write ``event``; returns its stream id."""
        payload = event.to_json()
        with redis_errors(), self._client.pipeline(transaction=True) as pipe:
            pipe.xadd(self.config.stream, {"event": payload}, maxlen=self.config.max_events, approximate=True)
            pipe.publish(self.camera_channel(event.camera), payload)
            if event.identity_id is not None:
                pipe.publish(self.identity_channel(event.identity_id), payload)
            stream_id = pipe.execute()[0]
        self.trim_by_age()
        return stream_id.decode() if isinstance(stream_id, bytes) else str(stream_id)

    def trim_by_age(self) -> None:
        """Drop events older than ``max_age_s`` (at most once a minute); ``publish`` calls it."""
        # Trimming by age is a separate command (XTRIM MINID); once a minute is plenty.
        now = time.time()
        if self.config.max_age_s is None or now - self._last_trim < 60:
            return
        self._last_trim = now
        oldest_ms = int((now - self.config.max_age_s) * 1000)
        with redis_errors():
            self._client.xtrim(self.config.stream, minid=f"{oldest_ms}-0", approximate=True)


def stream_id_since(since: str) -> str:
    """A stream id from ``0`` (everything), an ISO-8601 time, or a stream id.

    Raises:
        VigilError: ``since`` is none of these.
    """
    invalid = f"--since {since!r} is not 0, a stream id or an ISO time such as 2026-11-22T10:00:00"
    if since == "0":
        return _FIRST_ID
    if _STREAM_ID.fullmatch(since):  # not a date such as 2026-11-22, which has two dashes
        if any(int(part) >= _STREAM_ID_PART_LIMIT for part in since.split("-")):
            raise VigilError(invalid)  # Redis's ids are two 64-bit numbers
        return since
    try:
        moment = datetime.fromisoformat(since)
        if moment.tzinfo is None:
            moment = moment.astimezone()  # local time, as a user typing a time means
        milliseconds = int(moment.timestamp() * 1000)
    except (ValueError, OverflowError, OSError):
        raise VigilError(invalid) from None
    return f"{max(milliseconds, 0)}-0"  # before 1970: from the start


def stream_id_after(stream_id: str) -> str:
    """The first stream id after ``stream_id`` (reading from it leaves ``stream_id`` out).

    Raises:
        VigilError: ``stream_id`` is not one, or is the last id Redis can hold.
    """
    if not _STREAM_ID.fullmatch(stream_id):
        raise VigilError(f"{stream_id!r} is not a stream id such as 1733443200123-0")
    milliseconds, sequence = (int(part) for part in stream_id.split("-"))
    if max(milliseconds, sequence + 1) >= _STREAM_ID_PART_LIMIT:
        raise VigilError(f"{stream_id!r} is not an event's id: no id follows it")
    return f"{milliseconds}-{sequence + 1}"


def read_events(
    client: redis.Redis,
    config: EventsConfig,
    since: str = "0",
    camera: str | None = None,
    identity: str | None = None,
    batch: int = 500,
) -> Iterator[tuple[str, Event]]:
    """Past events from the stream (oldest first), optionally for one camera or identity.

    ``identity`` matches the identity id or the name.
    """
    start = stream_id_since(since)
    while True:
        with redis_errors():
            entries = cast(list[StreamEntry], client.xrange(config.stream, min=start, max="+", count=batch))
        for raw_id, fields in entries:
            stream_id = text(raw_id)
            event = _parse(config.stream, stream_id, fields)
            if event is not None and event_matches(event, camera, identity):
                yield stream_id, event
        if len(entries) < batch:
            return
        start = "(" + text(entries[-1][0])


def follow_events(
    client: redis.Redis,
    config: EventsConfig,
    after: str = "$",
    camera: str | None = None,
    identity: str | None = None,
    block_ms: int = 1000,
    stop: StopFlag | None = None,
) -> Iterator[tuple[str, Event]]:
    """New events as they are written (blocks), until ``stop`` is set or the caller breaks out.

    Reading the stream, not pub/sub, means a slow or reconnecting reader misses nothing.
    """
    # Pin "now" to an id, so that reconnects resume from it.
    last = newest_event_id(client, config) if after == "$" else after
    while stop is None or not stop.is_set():
        with redis_errors():
            response = cast(StreamResponse, client.xread({config.stream: last}, block=block_ms, count=100))
        for _, entries in response or []:
            for raw_id, fields in entries:
                last = text(raw_id)
                event = _parse(config.stream, last, fields)
                if event is not None and event_matches(event, camera, identity):
                    yield last, event


def newest_event_id(client: redis.Redis, config: EventsConfig) -> str:
    """The stream id of the newest event, or ``0-0`` when there is none yet."""
    with redis_errors():
        newest = cast(list[StreamEntry], client.xrevrange(config.stream, count=1))
    return text(newest[0][0]) if newest else _FIRST_ID


def subscribe(
    client: redis.Redis,
    config: EventsConfig | None = None,
    camera: str | None = None,
    identity: str | None = None,
    since: str | None = None,
) -> Iterator[Event]:
    """The Python client: iterate over events as they happen (and past ones with ``since``).

    Example:
        >>> for event in subscribe(connect_redis(settings.redis, settings.home), camera="door"):
        ...     print(event.type, event.name)
    """
    config = config or EventsConfig()
    last = "$"
    if since is not None:
        last = stream_id_since(since)
        for stream_id, event in read_events(client, config, since, camera, identity):
            last = stream_id
            yield event
    for _, event in follow_events(client, config, last, camera, identity):
        yield event


def event_matches(event: Event, camera: str | None, identity: str | None) -> bool:
    """Whether ``event`` is of ``camera`` and of ``identity`` (an id or a name); None: any."""
    if camera is not None and event.camera != camera:
        return False
    return identity is None or identity in (event.identity_id, event.name)


def _parse(stream: str, stream_id: str, fields: dict[bytes, bytes] | None) -> Event | None:
    try:
        return Event.model_validate_json((fields or {})[b"event"])
    except (KeyError, ValidationError, ValueError):
        # Written by a newer Vigil or by hand: skip it rather than stop every reader.
        metrics.POISON_ENTRIES.labels(stream=stream, reason="malformed").inc()
        logger.warning("skipping event %s: not a valid schema-%d event", stream_id, EVENT_SCHEMA_VERSION)
        return None
