"""Face tracks on one camera: association across frames, identity voting, and track events.

Frames arrive in order (the tracker service reorders them). Each face joins the active
track it resembles (cosine similarity to the track's recent embeddings at least
``min_similarity``) and overlaps (box IoU at least ``min_iou``, or a centre within two
box widths for fast motion), best overlap + similarity first, or starts a new track.
Resemblance is required even with a perfect overlap: a scene cut can put a different
person exactly where the last one was. Every frame's open-set decision is a vote; a track is
announced ``recognized`` once one person has ``min_votes`` votes, ``unknown`` once it has
stayed unmatched for ``unknown_after_frames`` frames, and ``track_ended`` when it has not
been seen for ``max_gap_s`` of capture time (or its camera's stream ended). This module is
pure logic; publishing and cooldowns are the tracker service's job.

For what the stream learns from tracks (kept unknown faces, template aging), each
``unknown`` and ``track_ended`` event comes with a ``TrackOutcome`` (``take_outcome``): the
track's best unmatched faces (by detection score × face size × how frontal the head is,
``frontal_factor``) and its best named face.
``outcome_to_json`` / ``outcome_from_json`` write it down, so that the tracker service can
record it with its event and learn from it after a restart.

A camera's tracks, and the number of its next track, can be written down (``snapshot_parts``)
and taken up again (``restore``): the tracker service keeps them in Redis with the events they
caused, so a restarted tracker carries on the same tracks under the same ids. Event ids
follow from the track and the event type (``event_id_for``): replaying a frame gives the
same event, with the same id. Each track is written apart from the rest, so that erasing a
person can drop their tracks from the stored state without reading it.

A person erased from the gallery is forgotten (``forget``): every open track with a trace of
them (a vote, a name, a face taken for them even as the runner-up) is dropped without an event.

With event thumbnails on (``streamer.events.thumbnails``), each event also comes with an
``EventThumbnail`` (``take_thumbnail``): the worker's crop of the face the event rests on (the
face whose box it carries), and whom the track was matched to, for erasure.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import numpy as np

from streamer.analysis import FaceResult, FrameResult, face_from_dict, face_to_dict
from streamer.events import (
    Event,
    EventAttributes,
    EventExpression,
    EventPose,
    EventType,
    event_id_for,
    iso_time,
)
from vigil.config.streamer import TrackerConfig
from vigil.errors import MalformedEntryError
from vigil.models.head_pose import head_pose_in_box

# Embeddings kept per track for association: enough to bridge a pose change.
RECENT_EMBEDDINGS = 5
# Outcomes not taken (a caller that ignores them) are dropped beyond this many, oldest first.
MAX_PENDING_OUTCOMES = 1000
# Faces with a crop kept per track for its expression: its best few, as for age and gender.
EXPRESSION_FACES = 3
# Faces with a chip kept per track for the fine-tuned age and gender model.
ATTRIBUTE_FACES = 3
# Version of ``CameraTracker.snapshot``'s JSON; a snapshot of another version is not restored.
SNAPSHOT_VERSION = 1


class SeenFace(NamedTuple):
    """A face of a track and its capture time (Unix seconds)."""

    face: FaceResult
    captured_at: float


_Kept = TypeVar("_Kept")

AttributeEstimate = Callable[[np.ndarray, str], EventAttributes | None]
"""Age and gender from a track's ``(N, D)`` backbone embeddings and the space they were matched in."""

ChipAttributeEstimate = Callable[[list[bytes]], EventAttributes | None]
"""Age and gender from a track's best aligned chips (JPEG, ``analysis.chip_jpeg``), best first."""

ExpressionEstimate = Callable[[list[bytes]], EventExpression | None]
"""The expression from a track's best face crops (JPEG, ``face_crop_jpeg``), best first."""


@dataclass(frozen=True)
class TrackOutcome:
    """What a track offers to learn from, handed over with its ``unknown`` or ``track_ended`` event.

    Attributes:
        event: The event.
        unknown_faces: The best faces no one was matched in, best first.
        named_face: The best face of the person the track was announced as, or None.
        frames: Frames in the track.
        agreeing_frames: Frames that named the announced person (0 when none).
        unmatched_frames: Frames that named no one.
        unknown_event_id: The id of the track's ``unknown`` event, if it had one.
    """

    event: Event
    unknown_faces: list[SeenFace]
    named_face: SeenFace | None
    frames: int
    agreeing_frames: int
    unmatched_frames: int
    unknown_event_id: str | None


@dataclass(frozen=True)
class EventThumbnail:
    """The JPEG of the face an event rests on, and what erasing someone must take with it.

    Attributes:
        event_id: The event.
        track_id: Its track.
        jpeg: The worker's crop of the face (``face_crop_jpeg``), or None when it sent none.
        track_event_ids: The ids of the track's events so far, this one's included: an
            ``unknown`` event's face is the person's too once the track is named.
        identity_ids: Everyone a frame of the track was matched to (its votes): erasing one of
            them deletes the thumbnails. A runner-up candidate is no match: a stranger's nearest
            person is somebody, and the stranger's face is not theirs.
    """

    event_id: str
    track_id: str
    jpeg: bytes | None = field(repr=False)
    track_event_ids: tuple[str, ...]
    identity_ids: frozenset[str]


@dataclass
class Track:
    """One face followed across frames."""

    track_id: str
    first_seen: float
    last_seen: float
    box: np.ndarray
    recent: deque[np.ndarray] = field(default_factory=lambda: deque(maxlen=RECENT_EMBEDDINGS))
    frames: int = 0
    votes: Counter[str] = field(default_factory=Counter)
    names: dict[str, str] = field(default_factory=dict)
    best_face: dict[str, FaceResult] = field(default_factory=dict)
    unmatched_frames: int = 0
    last_face: FaceResult | None = None
    last_frame: int = 0
    announced: str | None = None
    unknown_announced: bool = False
    unknown_event_id: str | None = None
    best_face_at: dict[str, float] = field(default_factory=dict)
    unknown_faces: list[SeenFace] = field(default_factory=list)
    attributes: EventAttributes | None = None
    expression: EventExpression | None = None
    expression_faces: list[FaceResult] = field(default_factory=list)  # not in snapshots: gathered again
    attribute_faces: list[FaceResult] = field(default_factory=list)  # likewise
    # Each kept face's quality, computed once (a head-pose fit each): not in snapshots.
    unknown_qualities: list[float] = field(default_factory=list, repr=False)
    expression_qualities: list[float] = field(default_factory=list, repr=False)
    attribute_qualities: list[float] = field(default_factory=list, repr=False)

    def similarity(self, embedding: np.ndarray) -> float:
        if not self.recent:
            return 0.0
        return float(max(np.dot(previous, embedding) for previous in self.recent))

    def add(self, face: FaceResult, frame: FrameResult, keep_faces: int) -> None:
        self.frames += 1
        self.last_seen = frame.captured_at
        self.last_frame = frame.number
        self.box = np.asarray(face.box)
        self.recent.append(_unit(face.embedding))
        self.last_face = face
        if face.identity_id is None:
            self.unmatched_frames += 1
            if len(self.unknown_qualities) != len(self.unknown_faces):  # restored from a snapshot
                self.unknown_qualities = [_face_quality(seen.face) for seen in self.unknown_faces]
            _keep_best(self.unknown_faces, self.unknown_qualities, SeenFace(face, frame.captured_at),
                       _face_quality(face), keep_faces)  # fmt: skip
            return
        self.votes[face.identity_id] += 1
        self.names[face.identity_id] = face.name or face.identity_id
        best = self.best_face.get(face.identity_id)
        if best is None or (face.score or 0.0) > (best.score or 0.0):
            self.best_face[face.identity_id] = face
            self.best_face_at[face.identity_id] = frame.captured_at

    def leader(self) -> tuple[str, int] | None:
        """The person with the most votes, and how many."""
        return self.votes.most_common(1)[0] if self.votes else None

    def best_score(self) -> float | None:
        scores = [face.score for face in self.best_face.values() if face.score is not None]
        if scores:
            return max(scores)
        return self.last_face.score if self.last_face is not None else None


class CameraTracker:
    """Tracks of one camera; ``update`` takes frames in order and returns the events they cause."""

    def __init__(
        self,
        camera: str,
        config: TrackerConfig,
        run_token: str,
        keep_faces: int = 5,
        attributes: AttributeEstimate | None = None,
        thumbnails: bool = False,
        expression: ExpressionEstimate | None = None,
        keep_unknown_images: bool = False,
        chip_attributes: ChipAttributeEstimate | None = None,
    ) -> None:
        self.camera = camera
        self._keep_unknown_images = keep_unknown_images
        self._attributes = attributes
        self._chip_attributes = chip_attributes
        self._expression = expression
        self._thumbnails: dict[str, EventThumbnail] | None = {} if thumbnails else None
        self.config = config
        self.keep_faces = keep_faces
        self._run_token = run_token
        self._outcomes: dict[str, TrackOutcome] = {}
        self.next_track = 1  # never restarts within a run: restored with the tracks
        self.tracks: list[Track] = []
        self._latest: FrameResult | None = None  # the rule and embedder in force, for ended tracks

    def update(self, frame: FrameResult) -> list[Event]:
        """Add one frame's faces; returns ``recognized`` / ``unknown`` / ``track_ended`` events."""
        self._latest = frame
        events = self.expire(frame.captured_at)
        for track, face in self._associate(frame):
            if self._expression is not None and track.expression is None and face.crop_jpeg is not None:
                _keep_expression_face(track, face)
            if self._chip_attributes is not None and track.attributes is None and face.chip_jpeg is not None:
                _keep_attribute_face(track, face)
            if face.crop_jpeg is not None and not self._keeps_image_of(face):
                # Cropped for the expression only: no image opt-in, so the track keeps none.
                face = dataclasses.replace(face, crop_jpeg=None)
            if face.chip_jpeg is not None:  # read once for age and gender; never kept beyond that
                face = dataclasses.replace(face, chip_jpeg=None)
            track.add(face, frame, self.keep_faces)
            events += self._decide(track, frame)
        return events

    def _keeps_image_of(self, face: FaceResult) -> bool:
        """Whether the user opted in to keeping this face's image (thumbnails, unknown faces' images)."""
        return self._thumbnails is not None or (self._keep_unknown_images and face.identity_id is None)

    def expire(self, now: float) -> list[Event]:
        """End tracks not seen for ``max_gap_s`` before ``now`` (capture time)."""
        ended = [t for t in self.tracks if now - t.last_seen > self.config.max_gap_s]
        self.tracks = [t for t in self.tracks if t not in ended]
        return [self._ended(track) for track in ended]

    def end_all(self) -> list[Event]:
        """End every track (the camera's stream ended, or the service stops)."""
        ended, self.tracks = self.tracks, []
        return [self._ended(track) for track in ended]

    def take_outcome(self, event_id: str) -> TrackOutcome | None:
        """The outcome of an ``unknown`` or ``track_ended`` event (once; None for other events)."""
        return self._outcomes.pop(event_id, None)

    def peek_outcome(self, event_id: str) -> TrackOutcome | None:
        """``take_outcome`` without taking it."""
        return self._outcomes.get(event_id)

    def take_thumbnail(self, event_id: str) -> EventThumbnail | None:
        """The thumbnail of an event (once; None with thumbnails off)."""
        return None if self._thumbnails is None else self._thumbnails.pop(event_id, None)

    def peek_thumbnail(self, event_id: str) -> EventThumbnail | None:
        """``take_thumbnail`` without taking it."""
        return None if self._thumbnails is None else self._thumbnails.get(event_id)

    def snapshot_parts(self) -> tuple[str, dict[str, str]]:
        """The camera's state in parts (see ``restore``): the next track number, the rule in force
        and the open tracks' ids as JSON, and each open track's JSON by its id."""
        tracks = {track.track_id: json.dumps(_track_to_dict(track)) for track in self.tracks}
        return json.dumps({**self._head(), "tracks": list(tracks)}), tracks

    def restore(self, snapshot: str, tracks: Mapping[str, str]) -> list[str]:
        """Take up the tracks of ``snapshot_parts`` (of this camera), replacing the current ones.

        Args:
            snapshot: The first of ``snapshot_parts``.
            tracks: Its tracks by id; a track missing from them is skipped.

        Returns:
            The ids of the tracks missing from ``tracks`` (an erasure dropped them).

        Raises:
            ValueError: The snapshot is not one ``snapshot_parts`` wrote (or of another version).
        """
        missing: list[str] = []
        try:
            state = json.loads(snapshot)
            if state["version"] != SNAPSHOT_VERSION:
                raise ValueError(f"snapshot version {state['version']}, not {SNAPSHOT_VERSION}")
            latest = state["latest"]
            ids = [str(track_id) for track_id in state["tracks"]]
            missing = [track_id for track_id in ids if track_id not in tracks]
            kept = [tracks[track_id] for track_id in ids if track_id in tracks]
            restored = [_track_from_dict(json.loads(raw)) for raw in kept]
            if latest is not None:
                latest = FrameResult.from_fields({b"result": json.dumps(latest).encode()})
            next_track = int(state["next_track"])
        except (KeyError, TypeError, ValueError, MalformedEntryError) as exc:
            raise ValueError(f"not a tracker snapshot: {exc}") from None
        self.tracks = restored
        self._latest = latest
        self.next_track = max(self.next_track, next_track)
        return missing

    def identity_ids(self) -> set[str]:
        """Everyone the open tracks hold a trace of (voted for, named, or taken as runner-up)."""
        return {identity for track in self.tracks for identity in _traces(track)}

    def forget(self, identity_ids: set[str]) -> list[str]:
        """Drop, without events, every open track with a trace of these people (they were erased).

        Returns:
            The ids of the dropped tracks.
        """
        dropped = [track.track_id for track in self.tracks if _traces(track) & identity_ids]
        self.tracks = [track for track in self.tracks if track.track_id not in dropped]
        for event_id in [key for key, outcome in self._outcomes.items() if outcome.event.track_id in dropped]:
            del self._outcomes[event_id]
        if self._thumbnails is not None:
            for event_id in [key for key, thumb in self._thumbnails.items() if thumb.track_id in dropped]:
                del self._thumbnails[event_id]
        return dropped

    def _head(self) -> dict[str, Any]:
        latest = None
        if self._latest is not None:
            latest = json.loads(dataclasses.replace(self._latest, faces=[]).to_fields()["result"])
        return {"version": SNAPSHOT_VERSION, "next_track": self.next_track, "latest": latest}

    def _associate(self, frame: FrameResult) -> list[tuple[Track, FaceResult]]:
        """Greedy matching of faces to tracks by overlap plus resemblance; the rest start tracks."""
        candidates = []
        for t, track in enumerate(self.tracks):
            for f, face in enumerate(frame.faces):
                overlap = _iou(track.box, np.asarray(face.box))
                similarity = track.similarity(_unit(face.embedding))
                if similarity < self.config.similarity_for(frame.embedder_version):
                    continue  # another person, e.g. after a scene cut to the same spot
                if overlap >= self.config.min_iou or _near(track.box, np.asarray(face.box)):
                    candidates.append((overlap + similarity, t, f))
        pairs: list[tuple[Track, FaceResult]] = []
        used_tracks: set[int] = set()
        used_faces: set[int] = set()
        for _, t, f in sorted(candidates, reverse=True):
            if t not in used_tracks and f not in used_faces:
                used_tracks.add(t)
                used_faces.add(f)
                pairs.append((self.tracks[t], frame.faces[f]))
        for f, face in enumerate(frame.faces):
            if f not in used_faces:
                track = Track(
                    track_id=f"{self.camera}-{self._run_token}-{self.next_track}",
                    first_seen=frame.captured_at,
                    last_seen=frame.captured_at,
                    box=np.asarray(face.box),
                )
                self.next_track += 1
                self.tracks.append(track)
                pairs.append((track, face))
        return pairs

    def _decide(self, track: Track, frame: FrameResult) -> list[Event]:
        leader = track.leader()
        if leader is not None and track.announced is None and leader[1] >= self.config.min_votes:
            track.announced = leader[0]
            return [self._event(EventType.RECOGNIZED, track, frame, track.best_face[leader[0]])]
        if (
            leader is None
            and not track.unknown_announced
            and track.unmatched_frames >= self.config.unknown_after_frames
            and track.last_face is not None
        ):
            track.unknown_announced = True
            event = self._event(EventType.UNKNOWN, track, frame, track.last_face)
            track.unknown_event_id = event.event_id
            self._hand_over(self._outcome(event, track))
            return [event]
        return []

    def _ended(self, track: Track) -> Event:
        face = track.best_face.get(track.announced or "") or track.last_face
        latest = self._latest
        assert face is not None and latest is not None  # a track exists only once a frame gave it a face
        event = self._event(EventType.TRACK_ENDED, track, latest, face).model_copy(
            update={
                "captured_at": iso_time(track.last_seen),
                "frame": track.last_frame,
                "duration_s": round(track.last_seen - track.first_seen, 3),
                "score": track.best_score(),
            }
        )
        self._hand_over(self._outcome(event, track))
        return event

    def _hand_over(self, outcome: TrackOutcome) -> None:
        self._outcomes[outcome.event.event_id] = outcome
        while len(self._outcomes) > MAX_PENDING_OUTCOMES:
            del self._outcomes[next(iter(self._outcomes))]

    def _outcome(self, event: Event, track: Track) -> TrackOutcome:
        named = track.announced
        return TrackOutcome(
            event=event,
            unknown_faces=list(track.unknown_faces),
            named_face=SeenFace(track.best_face[named], track.best_face_at[named]) if named else None,
            frames=track.frames,
            agreeing_frames=track.votes[named] if named else 0,
            unmatched_frames=track.unmatched_frames,
            unknown_event_id=track.unknown_event_id,
        )

    def _event(self, kind: EventType, track: Track, frame: FrameResult, face: FaceResult) -> Event:
        identity = track.announced if kind is not EventType.UNKNOWN else None
        if track.attributes is None:
            # Once per track, at its first recognized/unknown event; its track_ended repeats it.
            track.attributes = self._estimate_attributes(track, frame)
        if track.expression is None and self._expression is not None and track.expression_faces:
            # Likewise once per track, from its best crops so far (tried again while it gives None).
            track.expression = self._expression([f.crop_jpeg for f in track.expression_faces if f.crop_jpeg])
        event_id = event_id_for(track.track_id, kind)
        if self._thumbnails is not None:
            self._keep_thumbnail(event_id, track, face)
        return Event(
            event_id=event_id,
            type=kind,
            captured_at=iso_time(frame.captured_at),
            camera=self.camera,
            track_id=track.track_id,
            identity_id=identity,
            name=track.names.get(identity) if identity else None,
            score=face.score,
            threshold=frame.threshold,
            margin=frame.margin,
            box=face.box,
            landmarks=face.landmarks,
            pose=event_pose(face),
            frame=frame.number,
            embedder_version=frame.embedder_version,
            calibration=frame.calibration,
            latency_ms=0.0,
            track_frames=track.frames,
            attributes=track.attributes,
            expression=track.expression,
        )

    def _estimate_attributes(self, track: Track, frame: FrameResult) -> EventAttributes | None:
        """Age and gender from the track's best chips (fine-tuned model) or its recent embeddings (head)."""
        if self._chip_attributes is not None:
            chips = [face.chip_jpeg for face in track.attribute_faces if face.chip_jpeg]
            found = self._chip_attributes(chips) if chips else None
            if found is not None:  # the chips have done their work
                track.attribute_faces.clear()
                track.attribute_qualities.clear()
            return found
        if self._attributes is not None and track.recent:
            return self._attributes(np.stack(list(track.recent)), frame.embedder_version)
        return None

    def _keep_thumbnail(self, event_id: str, track: Track, face: FaceResult) -> None:
        assert self._thumbnails is not None
        recognized = event_id_for(track.track_id, EventType.RECOGNIZED) if track.announced else None
        ids = tuple(dict.fromkeys(i for i in (track.unknown_event_id, recognized, event_id) if i is not None))
        self._thumbnails[event_id] = EventThumbnail(
            event_id, track.track_id, face.crop_jpeg, ids, frozenset(track.votes)
        )
        while len(self._thumbnails) > MAX_PENDING_OUTCOMES:
            del self._thumbnails[next(iter(self._thumbnails))]


def outcome_to_json(outcome: TrackOutcome) -> str:
    """``outcome`` as JSON (embeddings base64), for ``outcome_from_json``."""

    def seen(face: SeenFace) -> list[Any]:
        return [face_to_dict(face.face), face.captured_at]

    return json.dumps(
        {
            "version": SNAPSHOT_VERSION,
            "event": outcome.event.model_dump(mode="json"),
            "unknown_faces": [seen(face) for face in outcome.unknown_faces],
            "named_face": None if outcome.named_face is None else seen(outcome.named_face),
            "frames": outcome.frames,
            "agreeing_frames": outcome.agreeing_frames,
            "unmatched_frames": outcome.unmatched_frames,
            "unknown_event_id": outcome.unknown_event_id,
        }
    )


def outcome_from_json(text: str | bytes) -> TrackOutcome:
    """The outcome ``outcome_to_json`` wrote.

    Raises:
        ValueError: ``text`` is not one (or of another version).
    """

    def seen(raw: list[Any]) -> SeenFace:
        face, captured_at = raw
        return SeenFace(face_from_dict(face), float(captured_at))

    try:
        raw = json.loads(text)
        if raw["version"] != SNAPSHOT_VERSION:
            raise ValueError(f"version {raw['version']}, not {SNAPSHOT_VERSION}")
        return TrackOutcome(
            event=Event.model_validate(raw["event"]),
            unknown_faces=[seen(face) for face in raw["unknown_faces"]],
            named_face=None if raw["named_face"] is None else seen(raw["named_face"]),
            frames=int(raw["frames"]),
            agreeing_frames=int(raw["agreeing_frames"]),
            unmatched_frames=int(raw["unmatched_frames"]),
            unknown_event_id=raw["unknown_event_id"],
        )
    except (KeyError, TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise ValueError(f"not a track outcome: {exc}") from None


def event_pose(face: FaceResult) -> EventPose | None:
    """The head pose of an event's face, or None when its landmarks cannot tell it.

    Results carry no frame size, so the camera is estimated from the box (principal point at
    its centre): the pose is relative to the line of sight (``head_pose_in_box``).
    """
    pose = head_pose_in_box(face.landmarks, face.box)
    return None if pose is None else EventPose(**vars(pose.rounded()))


def face_size_px(face: FaceResult) -> float:
    """Shorter side of the face's box, in pixels."""
    x1, y1, x2, y2 = face.box
    return float(min(x2 - x1, y2 - y1))


def _keep_expression_face(track: Track, face: FaceResult) -> None:
    """Keep ``face`` among the track's ``EXPRESSION_FACES`` best-quality faces with a crop."""
    _keep_best(
        track.expression_faces, track.expression_qualities, face, _face_quality(face), EXPRESSION_FACES
    )


def _keep_attribute_face(track: Track, face: FaceResult) -> None:
    """Keep ``face`` among the track's ``ATTRIBUTE_FACES`` best-quality faces with a chip."""
    _keep_best(track.attribute_faces, track.attribute_qualities, face, _face_quality(face), ATTRIBUTE_FACES)


def _keep_best(items: list[_Kept], qualities: list[float], item: _Kept, quality: float, keep: int) -> None:
    """Insert ``item`` into ``items`` (best first, their ``qualities`` beside), keeping the best ``keep``."""
    at = next((index for index, kept in enumerate(qualities) if quality > kept), len(qualities))
    items.insert(at, item)
    qualities.insert(at, quality)
    del items[keep:], qualities[keep:]


def _face_quality(face: FaceResult) -> float:
    # Larger, surer, more frontal detections embed more reliably: what is kept of unknown tracks.
    return face.detection_score * face_size_px(face) * frontal_factor(face)


def frontal_factor(face: FaceResult) -> float:
    """1 for a frontal face down to 0 for a profile (``HeadPose.frontal_factor``); 1 when unknown."""
    pose = head_pose_in_box(face.landmarks, face.box)
    return 1.0 if pose is None else pose.frontal_factor()


def _traces(track: Track) -> set[str]:
    """The identity ids anywhere in ``track`` (votes, names, its faces' best and runner-up)."""
    faces = [*track.best_face.values(), *(seen.face for seen in track.unknown_faces)]
    if track.last_face is not None:
        faces.append(track.last_face)
    found = {*track.votes, *track.names, *track.best_face}
    found |= {identity for face in faces for identity in (face.identity_id, face.candidate_id) if identity}
    if track.announced is not None:
        found.add(track.announced)
    return found


def _track_to_dict(track: Track) -> dict[str, Any]:
    return {
        "track_id": track.track_id,
        "first_seen": track.first_seen,
        "last_seen": track.last_seen,
        "box": [float(v) for v in track.box],
        "recent": [_vector_text(vector) for vector in track.recent],
        "frames": track.frames,
        "votes": dict(track.votes),
        "names": track.names,
        "best_face": {key: face_to_dict(face) for key, face in track.best_face.items()},
        "best_face_at": track.best_face_at,
        "unmatched_frames": track.unmatched_frames,
        "last_face": None if track.last_face is None else face_to_dict(track.last_face),
        "last_frame": track.last_frame,
        "announced": track.announced,
        "unknown_announced": track.unknown_announced,
        "unknown_event_id": track.unknown_event_id,
        "unknown_faces": [[face_to_dict(seen.face), seen.captured_at] for seen in track.unknown_faces],
        "attributes": None if track.attributes is None else track.attributes.model_dump(),
        "expression": None if track.expression is None else track.expression.model_dump(),
    }


def _track_from_dict(raw: dict[str, Any]) -> Track:
    return Track(
        track_id=str(raw["track_id"]),
        first_seen=float(raw["first_seen"]),
        last_seen=float(raw["last_seen"]),
        box=np.asarray([float(v) for v in raw["box"]]),
        recent=deque((_vector(text) for text in raw["recent"]), maxlen=RECENT_EMBEDDINGS),
        frames=int(raw["frames"]),
        votes=Counter({str(key): int(count) for key, count in raw["votes"].items()}),
        names={str(key): str(name) for key, name in raw["names"].items()},
        best_face={str(key): face_from_dict(face) for key, face in raw["best_face"].items()},
        best_face_at={str(key): float(at) for key, at in raw["best_face_at"].items()},
        unmatched_frames=int(raw["unmatched_frames"]),
        last_face=None if raw["last_face"] is None else face_from_dict(raw["last_face"]),
        last_frame=int(raw["last_frame"]),
        announced=raw["announced"],
        unknown_announced=bool(raw["unknown_announced"]),
        unknown_event_id=raw["unknown_event_id"],
        unknown_faces=[SeenFace(face_from_dict(face), float(at)) for face, at in raw["unknown_faces"]],
        attributes=None if raw["attributes"] is None else EventAttributes.model_validate(raw["attributes"]),
        # .get: snapshots from before expressions have none
        expression=EventExpression.model_validate(raw["expression"]) if raw.get("expression") else None,
    )


def _vector_text(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, "<f4").tobytes()).decode("ascii")


def _vector(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _near(a: np.ndarray, b: np.ndarray) -> bool:
    """Centres within two box widths: far enough for fast motion, near enough to exclude strangers."""
    width = max(a[2] - a[0], b[2] - b[0])
    centre_a, centre_b = (a[:2] + a[2:]) / 2, (b[:2] + b[2:]) / 2
    return bool(np.linalg.norm(centre_a - centre_b) <= 2 * width)
