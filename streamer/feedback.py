"""Finding the face behind an event, for ``vigil feedback EVENT_ID --not NAME | --is NAME``.

Events carry no embedding. The face is found, in this order:

1. for an unknown track, in the unknown store (``indexer.unknowns``; kept for
   ``indexer.unknowns.retention_s``);
2. in the workers' results stream (``streamer.bus.faces_stream``, the last
   ``streamer.bus.max_results`` frames): the result of the event's camera holding a face
   with exactly the event's box (boxes are copied, not recomputed), at or before the
   event's frame and nearest to its time. A ``track_ended`` event of a named track is
   looked up through its track's ``recognized`` event, whose box is the track's best face.

When neither holds it any more, an ``EventError`` says so. ``correct_event`` is the whole
correction, as ``vigil feedback`` and ``POST /api/v1/feedback`` make it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import redis

from indexer.corrections import Feedback, Verdict, apply_feedback
from indexer.unknowns import UnknownStore
from streamer.analysis import FaceResult, FrameResult
from streamer.events import Event, EventType, read_events
from vigil.config import Settings
from vigil.errors import EventError, MalformedEntryError
from vigil.models.head import backbone_of
from vigil.streams import StreamEntry, redis_errors
from vigil.typing import Embedding

_EVENT_ID = re.compile(r"[0-9a-f]{32}")
_SCAN_BATCH = 500


@dataclass(frozen=True)
class EventFace:
    """An event and its face's backbone embedding."""

    event: Event
    embedder_version: str
    embedding: Embedding


def check_event_id(event_id: str) -> str:
    """An event id as typed by a user, lower-cased.

    Raises:
        EventError: Not 32 hex digits.
    """
    if not _EVENT_ID.fullmatch(event_id.strip().lower()):
        raise EventError(
            f"malformed event id {event_id!r}: use the 32-hex-digit event_id of `vigil events --json`"
        )
    return event_id.strip().lower()


def find_event(client: redis.Redis, settings: Settings, event_id: str) -> Event:
    """The event with this id.

    Raises:
        EventError: Malformed id, or no such event in the events stream.
    """
    wanted = check_event_id(event_id)
    for _, event in read_events(client, settings.streamer.events):
        if event.event_id == wanted:
            return event
    raise EventError(
        f"no event {wanted} in {settings.streamer.events.stream} (events older than "
        "streamer.events.max_age_s are trimmed); see `vigil events`"
    )


def event_face(client: redis.Redis, settings: Settings, unknowns: UnknownStore, event_id: str) -> EventFace:
    """The event and its face's embedding (see the module docstring for where it is looked up).

    Raises:
        EventError: Malformed or unknown event id, or the embedding expired from every store.
    """
    event = find_event(client, settings, event_id)
    sighting = unknowns.entry_for_event(event.event_id)
    if sighting is not None:
        return EventFace(event, sighting.embedder_version, sighting.embeddings[0])
    target = event
    if event.type is EventType.TRACK_ENDED and event.identity_id is not None:
        target = next(
            (
                other
                for _, other in read_events(client, settings.streamer.events, camera=event.camera)
                if other.track_id == event.track_id and other.type is EventType.RECOGNIZED
            ),
            event,
        )
    face = _result_face(client, settings, target)
    if face is None:
        raise EventError(
            f"the face of event {event.event_id} is no longer stored (unknown faces are kept for "
            "indexer.unknowns.retention_s, frame results for the last streamer.bus.max_results frames); "
            "correct a more recent event of the same person"
        )
    return EventFace(event, backbone_of(event.embedder_version), face.embedding)


def correct_event(
    client: redis.Redis,
    settings: Settings,
    unknowns: UnknownStore,
    event_id: str,
    verdict: Verdict,
    name: str,
) -> Feedback:
    """Correct an event: its face is (``is``: a new template) or is not (``not``: a hard negative)
    the person called ``name``. An unknown track's kept entry that became a template is consumed.

    Returns:
        The correction kept (``item_id``: the template or negative it made).

    Raises:
        EventError: Malformed or unknown event id, or its face is no longer stored.
        GalleryError: Nobody is enrolled as ``name`` (checked before the events are scanned).
    """
    wanted = check_event_id(event_id)
    gallery = unknowns.gallery
    gallery.get_by_name(name)
    found = event_face(client, settings, unknowns, wanted)
    feedback = apply_feedback(
        gallery, found.event.event_id, verdict, name, found.embedder_version, found.embedding
    )
    if verdict == "is":
        from indexer.erase import StreamKeys, claim_thumbnails

        entry = unknowns.entry_for_event(wanted)
        unknowns.consume_entries([entry.entry_id] if entry is not None else [])
        # The user says the face is theirs: its thumbnail goes when they are erased.
        claim_thumbnails(client, StreamKeys.from_settings(settings), feedback.identity_id, [wanted])
    return feedback


def _result_face(client: redis.Redis, settings: Settings, event: Event) -> FaceResult | None:
    """The face of the event's camera with the event's box, at or before its frame, nearest in time."""
    captured = datetime.fromisoformat(event.captured_at).timestamp()
    best: tuple[float, FaceResult] | None = None
    start = "-"
    stream = settings.streamer.bus.faces_stream
    while True:
        with redis_errors():
            entries = cast(list[StreamEntry], client.xrange(stream, min=start, max="+", count=_SCAN_BATCH))
        for _, fields in entries:
            try:
                result = FrameResult.from_fields(fields)
            except MalformedEntryError:
                continue  # a poison entry names no face; the tracker counts it
            if result.camera != event.camera or result.number > event.frame:
                continue
            for face in result.faces:
                if face.box == event.box and (
                    event.identity_id is None or face.identity_id == event.identity_id
                ):
                    distance = abs(result.captured_at - captured)
                    if best is None or distance < best[0]:
                        best = (distance, face)
        if len(entries) < _SCAN_BATCH:
            return None if best is None else best[1]
        start = "(" + entries[-1][0].decode()
