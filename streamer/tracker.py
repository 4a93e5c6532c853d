"""The tracker service: worker results in frame order → tracks → events on Redis, exactly once.

Workers finish frames out of order (several workers, batches across cameras); tracks need
them in order. ``ReorderBuffer`` releases each camera's results by frame number, waiting
up to ``tracker.reorder_window_ms`` for a missing frame before counting it as dropped
(trimmed from a full bus). Duplicates and frames that arrive too late are discarded, so a
frame can never produce events twice.

Each step commits in one server-side script (``_COMMIT_SCRIPT``), in this order: the events
(appended and announced), the cooldown keys of the ``recognized`` ones, each changed
camera's tracks (``CameraTracker.snapshot_parts``: the camera's state, with the reorder
position and whether the camera ended, in one hash; each open track in another, by track
id) and only then the acknowledgement of the results behind them. A tracker killed
at any point, or a Redis error at any point, leaves either all of a step or none of it: a
restarted tracker (or one that reconnects) takes its tracks up from Redis, replays every
result still pending, and so publishes each visit's events once, with the same track ids and
event ids. Tracks of an earlier run that crashed are ended when a new run starts.

``recognized`` events also pass a cooldown kept in Redis (a key per camera and person, set
with the event): a person who leaves and comes back within ``tracker.cooldown_s`` is the
same visit, even across a restart of the tracker.

A result nobody can read (malformed, or trimmed from the stream while pending) is poison:
counted in ``vigil_bus_poison_entries_total``, logged, acknowledged and skipped.

A person erased from the gallery (``vigil people delete``) is forgotten here too: each commit
names the gallery version it was checked against and is refused if the gallery moved since;
the tracker then drops (``CameraTracker.forget``) every open track with a trace of someone no
longer enrolled, and the events of those tracks, before it commits again. Faces taken for an
erased person in later results (a worker that had not reloaded yet) are dropped, also for a
person this tracker never met: the gallery keeps a tombstone of each erased id
(``Gallery.erased_key``). So once an
erasure has run, no event names the person, and the erasure itself removes their tracks from
the stored state (``indexer.erase``: the hash of tracks), even with no tracker running.

Once an ``unknown`` or ``track_ended`` event is published, its track's outcome goes to
``streamer.learning`` (unknown faces kept, template aging). The outcome is recorded in the same
commit as its event (a hash by event id, ``learning_key``) and removed once learnt, so a
tracker killed in between learns it after its restart (``_restore``). Learning is idempotent:
an unknown entry is rewritten under its event id, and a repeated aging template is refused as
a near-duplicate of itself.

With ``streamer.events.thumbnails`` on, each published event's thumbnail (the JPEG of its face)
is written by the same commit, and only if the event was (``streamer.thumbnails``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

import redis

from indexer.erase import StreamKeys
from indexer.gallery import MAX_TRANSACTION_ATTEMPTS, Gallery, erased_marker
from streamer import metrics
from streamer.analysis import FrameResult
from streamer.events import Event, EventPublisher, EventType
from streamer.learning import TrackLearning
from streamer.thumbnails import thumbnail_section
from streamer.track_attributes import TrackAttributes, TrackChipAttributes
from streamer.track_expression import TrackExpression
from streamer.tracking import CameraTracker, EventThumbnail, TrackOutcome, outcome_from_json, outcome_to_json
from vigil.config import Settings
from vigil.errors import GalleryError, MalformedEntryError
from vigil.stop import StopFlag
from vigil.streams import StreamEntry, StreamResponse, ensure_group, redis_errors, text

logger = logging.getLogger(__name__)

TRACKER_GROUP = "tracker"
TRACKER_CONSUMER = "tracker"
_READ_BLOCK_MS = 100
_READ_COUNT = 256
# Version of a camera's state in Redis (``_camera_state``); another version starts afresh.
# 2: tracks kept apart, one hash field each (``tracks_key``).
STATE_VERSION = 2
# What the commit script returns when the gallery moved since the tracker last checked it.
_GALLERY_MOVED = -1

# One step of the tracker, atomically: events first (so a failure writes nothing), then
# cooldowns, camera states and the acknowledgements. Redis runs a script alone and stops it
# at the first failing call, so the key types are checked before anything is written; under
# maxmemory only a script's first write can be refused.
# KEYS: events stream, state hash, track-number hash, results stream, tracks hash, gallery
#   version, learning hash, cooldown and thumbnail keys..., then the per-person sets of thumbnails.
# ARGV: max events, group, #events, #states, #acks, gallery version checked, #thumbnails,
#   thumbnail TTL ms, index in KEYS of the first thumbnail set, then per event:
#   payload, camera channel, identity channel or "", index of its cooldown key in KEYS or 0,
#   cooldown ms, track id, event id, outcome JSON or "" (recorded when published); per state:
#   camera, state JSON, next track number, #tracks stored, #tracks gone, (track id, track
#   JSON) per track stored, track id per track gone; then the acknowledged ids; then per
#   thumbnail, what ``streamer.thumbnails.ThumbnailSection`` says (written when its event is).
# Returns each event's stream id, or nil when its cooldown suppressed it; -1 and nothing
# written when the gallery version is no longer the one checked (someone may be erased).
_COMMIT_SCRIPT = """
if (redis.call('GET', KEYS[6]) or '0') ~= ARGV[6] then return -1 end
for k = 1, 7 do
  local kind = redis.call('TYPE', KEYS[k]).ok
  local want = (k == 1 or k == 4) and 'stream' or 'hash'
  if k ~= 4 and k ~= 6 and kind ~= 'none' and kind ~= want then
    return redis.error_reply('WRONGTYPE ' .. KEYS[k] .. ' is a ' .. kind .. ', not a ' .. want)
  end
end
for k = tonumber(ARGV[9]), #KEYS do
  local kind = redis.call('TYPE', KEYS[k]).ok
  if kind ~= 'none' and kind ~= 'set' then
    return redis.error_reply('WRONGTYPE ' .. KEYS[k] .. ' is a ' .. kind .. ', not a set')
  end
end
local n_events, n_states, n_acks = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local i = 10
local published = {}
for e = 1, n_events do
  local payload, camera_channel, identity_channel = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local cooldown = tonumber(ARGV[i + 3])
  local id = false
  if cooldown == 0 or redis.call('EXISTS', KEYS[cooldown]) == 0 then
    id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'event', payload)
    redis.call('PUBLISH', camera_channel, payload)
    if identity_channel ~= '' then
      redis.call('PUBLISH', identity_channel, payload)
    end
    if cooldown ~= 0 then
      redis.call('SET', KEYS[cooldown], ARGV[i + 5], 'PX', ARGV[i + 4])
    end
    if ARGV[i + 7] ~= '' then
      redis.call('HSET', KEYS[7], ARGV[i + 6], ARGV[i + 7])
    end
  end
  published[e] = id
  i = i + 8
end
for s = 1, n_states do
  local camera, state, next_track = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local n_stored, n_gone = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  redis.call('HSET', KEYS[2], camera, state)
  if next_track > tonumber(redis.call('HGET', KEYS[3], camera) or '0') then
    redis.call('HSET', KEYS[3], camera, next_track)
  end
  i = i + 5
  for t = 1, n_stored do
    redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 1])
    i = i + 2
  end
  for t = 1, n_gone do
    redis.call('HDEL', KEYS[5], ARGV[i])
    i = i + 1
  end
end
local last = i + n_acks - 1
while i <= last do  -- in chunks: unpack is bounded by Lua's stack
  local upto = math.min(i + 999, last)
  redis.call('XACK', KEYS[4], ARGV[2], unpack(ARGV, i, upto))
  i = upto + 1
end
for t = 1, tonumber(ARGV[7]) do
  local n_members, n_sets = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  local members, sets = i + 5, i + 5 + n_members
  if published[tonumber(ARGV[i])] then
    if ARGV[i + 2] ~= '' then
      redis.call('SET', KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], 'PX', ARGV[8])
    end
    for s = sets, sets + n_sets - 1 do
      redis.call('SADD', KEYS[tonumber(ARGV[s])], unpack(ARGV, members, sets - 1))
      redis.call('PEXPIRE', KEYS[tonumber(ARGV[s])], ARGV[8])
    end
  end
  i = sets + n_sets
end
return published
"""


@dataclass
class _CameraOrder:
    next_number: int | None = None
    waiting: dict[int, tuple[FrameResult, str, float]] = field(default_factory=dict)


class ReorderBuffer:
    """Releases each camera's results in frame order (see the module docstring)."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._cameras: dict[str, _CameraOrder] = {}

    def add(self, result: FrameResult, entry_id: str, now: float) -> bool:
        """Hold ``result``; False (and nothing held) when it is a duplicate or too late."""
        order = self._cameras.setdefault(result.camera, _CameraOrder())
        if order.next_number is not None and result.number < order.next_number:
            return False
        if result.number in order.waiting:
            return False
        order.waiting[result.number] = (result, entry_id, now)
        return True

    def position(self, camera: str) -> int | None:
        """The next frame number ``camera`` expects (None before its first release)."""
        order = self._cameras.get(camera)
        return None if order is None else order.next_number

    def resume(self, camera: str, next_number: int | None) -> None:
        """Carry on at ``next_number`` for ``camera`` (a restored tracker), holding nothing."""
        self._cameras[camera] = _CameraOrder(next_number)

    def release(self, now: float) -> list[tuple[FrameResult, str, int]]:
        """Results ready to track, in order, with how many frames were skipped before each."""
        ready: list[tuple[FrameResult, str, int]] = []
        for order in self._cameras.values():
            while order.waiting:
                number = min(order.waiting)
                result, entry_id, arrived = order.waiting[number]
                in_order = order.next_number is not None and number == order.next_number
                if not in_order and now - arrived < self.window_s:
                    break
                skipped = 0 if order.next_number is None else number - order.next_number
                del order.waiting[number]
                order.next_number = number + 1
                ready.append((result, entry_id, skipped))
        return ready


@dataclass
class _Step:
    """What one step of the tracker commits: events (each with its latency start), acks, changed cameras."""

    events: list[tuple[Event, float | None]] = field(default_factory=list)
    acks: list[str] = field(default_factory=list)
    cameras: set[str] = field(default_factory=set)

    def add(self, events: list[Event], camera: str, read_at: float | None = None) -> None:
        self.events += [(event, read_at) for event in events]
        if events:
            self.cameras.add(camera)


class TrackerService:
    """Consumes worker results, tracks faces per camera and publishes events (exactly once).

    Args:
        client: Redis connection.
        settings: The service's settings.
        run_token: Short id of this run, part of every track id.
        finish_after: When set, return once every one of these cameras has ended (file sources).
        gallery: Where stream learning stores unknowns and aging templates (default: the
            gallery of ``client``).
    """

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        run_token: str,
        finish_after: set[str] | None = None,
        gallery: Gallery | None = None,
    ) -> None:
        self._client = client
        self.settings = settings
        self.config = settings.streamer
        self.run_token = run_token
        self.publisher = EventPublisher(client, settings.streamer.events)
        self.buffer = ReorderBuffer(settings.streamer.tracker.reorder_window_ms / 1000)
        self.trackers: dict[str, CameraTracker] = {}
        tracker = settings.streamer.tracker
        fine_tuned = tracker.attributes and tracker.attribute_model == "fine_tuned"
        self._attributes = TrackAttributes(settings.home) if tracker.attributes and not fine_tuned else None
        # The fine-tuned model reads the chips the workers send with each face.
        self._chip_attributes = TrackChipAttributes(settings) if fine_tuned else None
        # Expression only for the cameras that opted in (their workers send the face crops).
        self._expression_cameras = {c.name for c in settings.streamer.cameras if "expression" in c.analysis}
        self._expression = TrackExpression(settings.model_files_dir) if self._expression_cameras else None
        self.finish_after = finish_after
        self.ended: set[str] = set()
        self._last_result_at: dict[str, tuple[float, float]] = {}  # camera -> (wall time, capture time)
        gallery = gallery if gallery is not None else Gallery(client)
        self.learning = TrackLearning(gallery, settings.indexer, settings.streamer.tracker)
        stream = settings.streamer.bus.faces_stream
        self.state_key = f"{stream}:tracker:state"
        self._keys = StreamKeys.from_settings(settings)  # erasure purges these too
        self.tracks_key, self.learning_key = self._keys.tracks, self._keys.learning
        self._stored_tracks: dict[str, set[str]] = {}  # camera -> its track ids in tracks_key
        self._gallery_version: int | None = None  # the gallery version open tracks were checked at
        self._live: set[str] = set()  # identities not to drop at that version
        self._enrolled: set[str] = set()  # identities this tracker has found enrolled
        self._erased: set[str] = set()  # identities found enrolled, then gone (ids are never reused)
        self.track_numbers_key = f"{stream}:tracker:next_track"
        self._commit_script = client.register_script(_COMMIT_SCRIPT)

    def use_connection(self, client: redis.Redis) -> None:
        """Carry on with a new connection (after a Redis outage).

        The next ``run`` takes the tracks up from Redis again: what the outage interrupted
        either was committed there or is replayed from the pending results.
        """
        self._client = client
        self.publisher = EventPublisher(client, self.config.events)
        gallery = Gallery(client, self.learning.gallery.namespace)
        self.learning = TrackLearning(gallery, self.settings.indexer, self.config.tracker)
        self._commit_script = client.register_script(_COMMIT_SCRIPT)

    def ensure_group(self) -> None:
        ensure_group(self._client, self.config.bus.faces_stream, TRACKER_GROUP)

    def run(self, stop: StopFlag) -> None:
        """Track until ``stop`` is set (then end every track) or every awaited camera has ended."""
        self.ensure_group()
        self._restore()
        self._replay_pending()
        while not stop.is_set() and not self.finished:
            self._consume()
        step = _Step()
        for camera, tracker in self.trackers.items():
            step.add(tracker.end_all(), camera)
        self._commit(step)

    @property
    def finished(self) -> bool:
        return self.finish_after is not None and self.finish_after <= self.ended

    # -- state in Redis ---------------------------------------------------------------------------

    def _restore(self) -> None:
        """Take up every camera's tracks from Redis; end those an earlier run left open."""
        self.buffer = ReorderBuffer(self.config.tracker.reorder_window_ms / 1000)
        self.trackers, self.ended, self._last_result_at = {}, set(), {}
        self._stored_tracks, self._gallery_version, self._live = {}, None, set()
        with redis_errors():
            states = cast(dict[bytes, bytes], self._client.hgetall(self.state_key))
            numbers = cast(dict[bytes, bytes], self._client.hgetall(self.track_numbers_key))
            stored = cast(dict[bytes, bytes], self._client.hgetall(self.tracks_key))
        tracks = {text(track_id): text(raw) for track_id, raw in stored.items()}
        step = _Step()
        for raw_camera, raw_state in states.items():
            camera = text(raw_camera)
            tracker = self._tracker(camera)
            tracker.next_track = max(tracker.next_track, int(numbers.get(raw_camera, b"1")))
            try:
                state = json.loads(raw_state)
                if state["version"] != STATE_VERSION:
                    raise ValueError(f"state version {state['version']}")
                erased = tracker.restore(state["tracks"], tracks)
                run, ended, captured = str(state["run"]), bool(state["ended"]), state["captured_at"]
                next_number = None if state["next_number"] is None else int(state["next_number"])
                captured = None if captured is None else float(captured)
            except (KeyError, TypeError, ValueError) as exc:
                logger.warning("camera %s: cannot take up its tracks (%s); starting afresh", camera, exc)
                tracker.tracks = []
                step.cameras.add(camera)  # rewritten as it is now: nothing of the old state stays
                continue
            self._stored_tracks[camera] = {track.track_id for track in tracker.tracks}
            if erased:
                logger.info("camera %s: %d open tracks were erased with their person", camera, len(erased))
            if run != self.run_token:  # tracks of an earlier run: they ended with it
                step.add(tracker.end_all(), camera)
                step.cameras.add(camera)
                continue
            self.buffer.resume(camera, next_number)
            if ended:
                self.ended.add(camera)
            if captured is not None:
                self._last_result_at[camera] = (time.monotonic(), captured)
            if tracker.tracks:
                logger.info("camera %s: took up %d open tracks", camera, len(tracker.tracks))
        self._commit(step)
        self._learn_pending()

    def _camera_state(self, camera: str) -> tuple[str, dict[str, str]]:
        """The camera's state as JSON, and its open tracks' JSON by track id."""
        last = self._last_result_at.get(camera)
        snapshot, tracks = self._tracker(camera).snapshot_parts()
        state = json.dumps(
            {
                "version": STATE_VERSION,
                "run": self.run_token,
                "next_number": self.buffer.position(camera),
                "ended": camera in self.ended,
                "captured_at": None if last is None else last[1],
                "tracks": snapshot,
            }
        )
        return state, tracks

    def _commit(self, step: _Step) -> None:
        """Publish the step's events, store the changed cameras and acknowledge, in one script.

        Raises:
            GalleryError: The gallery changed at every attempt (the restarted tracker replays).
        """
        for _ in range(MAX_TRANSACTION_ATTEMPTS):
            self._forget_erased(step)
            if not (step.events or step.acks or step.cameras):
                return
            if self._try_commit(step):
                return
        raise GalleryError(
            f"the gallery changed {MAX_TRANSACTION_ATTEMPTS} times while the tracker committed; it restarts"
        )

    def _try_commit(self, step: _Step) -> bool:
        """One attempt at ``_commit``; False (nothing written) when the gallery moved meanwhile."""
        events = [self._with_latency(event, read_at) for event, read_at in step.events]
        cooldown_ms = int(self.config.tracker.cooldown_s * 1000)
        keys = [
            self.config.events.stream,
            self.state_key,
            self.track_numbers_key,
            self.config.bus.faces_stream,
            self.tracks_key,
            self.learning.gallery.version_key,
            self.learning_key,
        ]
        body: list[str | int | bytes] = []  # after the header, which counts what it holds
        for event in events:
            cooldown = 0
            if event.type is EventType.RECOGNIZED and cooldown_ms > 0:
                keys.append(f"{self.config.events.stream}:cooldown:{event.camera}:{event.identity_id}")
                cooldown = len(keys)
            identity_channel = (
                "" if event.identity_id is None else self.publisher.identity_channel(event.identity_id)
            )
            outcome = self._tracker(event.camera).peek_outcome(event.event_id)
            body += [
                event.to_json(),
                self.publisher.camera_channel(event.camera),
                identity_channel,
                cooldown,
                cooldown_ms,
                event.track_id,
                event.event_id,
                "" if outcome is None else outcome_to_json(outcome),
            ]
        stored: dict[str, set[str]] = {}
        for camera in sorted(step.cameras):
            state, tracks = self._camera_state(camera)
            gone = sorted(self._stored_tracks.get(camera, set()) - set(tracks))
            body += [camera, state, self._tracker(camera).next_track, len(tracks), len(gone)]
            body += [item for pair in tracks.items() for item in pair] + gone
            stored[camera] = set(tracks)
        body += step.acks
        thumbnails = self._thumbnails(events)
        section = thumbnail_section(keys, self._keys, thumbnails)
        args: list[str | int | bytes] = [
            self.config.events.max_events,
            TRACKER_GROUP,
            len(events),
            len(step.cameras),
            len(step.acks),
            str(self._gallery_version or 0),
            section.count,
            max(1, round((self.config.events.max_age_s or 0.0) * 1000)),
            section.first_set_key,
            *body,
            *section.arguments,
        ]
        with redis_errors():
            published = cast(list[bytes | None] | int, self._commit_script(keys=keys, args=args))
        if isinstance(published, int):  # _GALLERY_MOVED: check who is still enrolled, then again
            self._gallery_version = None
            return False
        self._stored_tracks.update(stored)
        for event, stream_id in zip(events, published, strict=True):
            self._announced(event, stream_id is not None)
        self.publisher.trim_by_age()
        return True

    def _thumbnails(self, events: list[Event]) -> list[tuple[int, EventThumbnail]]:
        """The events' thumbnails (``streamer.events.thumbnails``), each with its event's number from 1."""
        peeked = [self._tracker(event.camera).peek_thumbnail(event.event_id) for event in events]
        return [(number, thumb) for number, thumb in enumerate(peeked, 1) if thumb is not None]

    # -- erased people ----------------------------------------------------------------------------

    def _forget_erased(self, step: _Step) -> None:
        """When the gallery version is not known (start-up, or the commit script found that it
        moved): read it, and drop the open tracks, and the step's events, of erased people.

        Otherwise nothing is read: the commit script checks the version itself, so a step costs
        no extra round trip while the gallery stays as it is.
        """
        if self._gallery_version is not None:
            return
        self._gallery_version, self._live = self.learning.gallery.version(), set()
        held = {identity for tracker in self.trackers.values() for identity in tracker.identity_ids()}
        held |= {event.identity_id for event, _ in step.events if event.identity_id is not None}
        erased = self._erased_among(held)
        if not erased:
            return
        dropped: set[str] = set()
        for camera, tracker in self.trackers.items():
            forgotten = tracker.forget(erased)
            if forgotten:
                dropped.update(forgotten)
                step.cameras.add(camera)
        kept = []
        for event, read_at in step.events:
            if event.track_id in dropped or event.identity_id in erased:
                self._tracker(event.camera).take_outcome(event.event_id)  # nothing learnt of them
                self._tracker(event.camera).take_thumbnail(event.event_id)
            else:
                kept.append((event, read_at))
        step.events = kept
        logger.info("dropped %d open tracks of %d erased people", len(dropped), len(erased))

    def _erased_among(self, identity_ids: set[str]) -> set[str]:
        """Those of ``identity_ids`` that were enrolled and are no longer (ids are never reused).

        An id is erased when this tracker found it enrolled before, or when the gallery's
        tombstones name it (``Gallery.erased_key``: a stale worker's result may name someone
        erased before this tracker met them). Any other id is left alone: it may belong to a
        gallery this tracker does not read (another namespace, a test's synthetic results).
        """
        unknown = sorted(identity_ids - self._live - self._erased)
        if unknown:
            gallery = self.learning.gallery
            with redis_errors():
                pipe = self._client.pipeline(transaction=False)
                for identity in unknown:
                    pipe.exists(gallery.identity_key(identity))
                    pipe.zscore(gallery.erased_key, erased_marker(identity))
                found = pipe.execute()
            for identity, exists, tombstone in zip(unknown, found[::2], found[1::2], strict=True):
                if exists:
                    self._enrolled.add(identity)
                was_enrolled = identity in self._enrolled or tombstone is not None
                (self._erased if was_enrolled and not exists else self._live).add(identity)
        return identity_ids & self._erased

    def _without_erased(self, result: FrameResult) -> FrameResult:
        """``result`` without the faces taken for erased people (a worker not reloaded yet)."""
        named = {i for face in result.faces for i in (face.identity_id, face.candidate_id) if i is not None}
        erased = self._erased_among(named) if named else set()
        if not erased:
            return result
        faces = [face for face in result.faces if not {face.identity_id, face.candidate_id} & erased]
        return dataclasses.replace(result, faces=faces)

    def _with_latency(self, event: Event, read_at: float | None) -> Event:
        """``event`` with its latency: from ``read_at`` (the frame's arrival), else from capture."""
        start = read_at if read_at is not None and not math.isnan(read_at) else None
        if start is None:
            start = datetime.fromisoformat(event.captured_at).timestamp()
        latency_s = max(time.time() - start, 0.0)
        return event.model_copy(update={"latency_ms": round(latency_s * 1000, 1)})

    def _announced(self, event: Event, published: bool) -> None:
        """Count and log a committed event, and learn from its track's outcome."""
        outcome = self._tracker(event.camera).take_outcome(event.event_id)
        self._tracker(event.camera).take_thumbnail(event.event_id)  # written with it, if published
        if not published:
            metrics.RECOGNITIONS.labels(camera=event.camera, outcome="suppressed").inc()
            # Ids, not names, in logs: a name in a log file would survive the person's erasure.
            logger.info(
                "%s seen again on %s within the cooldown: same visit", event.identity_id, event.camera
            )
            return
        metrics.EVENTS_PUBLISHED.labels(camera=event.camera, type=event.type.value).inc()
        if event.type is not EventType.TRACK_ENDED:
            metrics.RECOGNITIONS.labels(camera=event.camera, outcome=event.type.value).inc()
            metrics.EVENT_LATENCY.labels(camera=event.camera).observe(event.latency_ms / 1000)
        logger.info(
            "event %s %s %s on %s", event.type.value, event.identity_id or "-", event.track_id, event.camera
        )
        if outcome is not None:  # after publishing: what is kept refers to a written event
            self._learn(outcome)

    def _learn(self, outcome: TrackOutcome) -> None:
        """Learn from ``outcome``, then drop its record (a kill in between learns it again)."""
        self.learning.learn(outcome)
        with redis_errors():
            self._client.hdel(self.learning_key, outcome.event.event_id)

    def _learn_pending(self) -> None:
        """Learn from the outcomes an earlier tracker committed but did not learn from (killed)."""
        with redis_errors():
            pending = cast(dict[bytes, bytes], self._client.hgetall(self.learning_key))
        for raw_id, raw in sorted(pending.items()):
            try:
                outcome = outcome_from_json(raw)
            except ValueError as exc:
                logger.warning("dropping unreadable learning record %s: %s", text(raw_id), exc)
                with redis_errors():
                    self._client.hdel(self.learning_key, raw_id)
                continue
            logger.info("learning from event %s, published before a restart", outcome.event.event_id)
            self._learn(outcome)

    # -- reading results --------------------------------------------------------------------------

    def _replay_pending(self) -> None:
        """Track every result a previous tracker read but did not acknowledge, however many."""
        after = "0"
        while True:
            entries = self._read(after, block_ms=None)
            if not entries:
                return
            self._step(entries)
            after = text(entries[-1][0])

    def _consume(self) -> None:
        self._step(self._read(">", block_ms=_READ_BLOCK_MS))

    def _read(self, start: str, block_ms: int | None) -> list[StreamEntry]:
        with redis_errors():
            response = cast(
                StreamResponse,
                self._client.xreadgroup(
                    TRACKER_GROUP,
                    TRACKER_CONSUMER,
                    {self.config.bus.faces_stream: start},
                    count=_READ_COUNT,
                    block=block_ms,
                ),
            )
        return [entry for _, entries in response or [] for entry in entries]

    def _step(self, entries: list[StreamEntry]) -> None:
        step = _Step()
        now = time.monotonic()
        step.acks += self._hold(entries, now)
        self._track(self.buffer.release(time.monotonic()), step, now)
        # Idleness counts from the step's start: the tracker's own work in the step (a slow
        # attribute model, say) is not a camera going quiet.
        self._expire_idle_cameras(step, now)
        self._commit(step)

    def _hold(self, entries: list[StreamEntry], now: float) -> list[str]:
        """Put results in the reorder buffer; the ids to acknowledge at once (duplicates, poison)."""
        stream = self.config.bus.faces_stream
        done: list[str] = []
        trimmed = 0
        for raw_id, fields in entries:
            entry_id = text(raw_id)
            try:
                result = FrameResult.from_fields(fields)
            except MalformedEntryError as exc:
                done.append(entry_id)
                if not fields:
                    trimmed += 1
                    continue
                metrics.POISON_ENTRIES.labels(stream=stream, reason="malformed").inc()
                logger.warning("skipping unreadable result %s on %s: %s", entry_id, stream, exc)
                continue
            if not self.buffer.add(result, entry_id, now):
                done.append(entry_id)
        if trimmed:
            metrics.POISON_ENTRIES.labels(stream=stream, reason="trimmed").inc(trimmed)
            logger.warning("skipping %d results trimmed from %s while pending", trimmed, stream)
        return done

    def _track(self, ready: list[tuple[FrameResult, str, int]], step: _Step, now: float) -> None:
        for result, entry_id, skipped in ready:
            camera = result.camera
            tracker = self._tracker(camera)
            if skipped:
                metrics.FRAMES_DROPPED.labels(camera=camera, reason="backpressure").inc(skipped)
            if result.end_of_stream:
                events = tracker.end_all()
                self.ended.add(camera)
                logger.info("camera %s ended after %d frames", camera, result.number)
            else:
                events = tracker.update(self._without_erased(self._with_chips(result)))
                self._last_result_at[camera] = (now, result.captured_at)
            step.add(events, camera, result.read_at)
            step.cameras.add(camera)  # its reorder position moved on
            step.acks.append(entry_id)

    def _with_chips(self, result: FrameResult) -> FrameResult:
        """The result with its faces' chips, read from their key and deleted there at once (face images:
        read once, kept nowhere). A key already expired or deleted (a replay) gives no chips."""
        if result.chips_key is None:
            return result
        with redis_errors(), self._client.pipeline(transaction=True) as pipe:
            pipe.hgetall(result.chips_key)
            pipe.delete(result.chips_key)
            stored, _ = pipe.execute()
        if self._chip_attributes is None:
            return result  # workers configured apart from this tracker: the chips only needed deleting
        chips = {int(index): jpeg for index, jpeg in stored.items() if index.isdigit()}
        faces = [
            dataclasses.replace(face, chip_jpeg=chips.get(position))
            for position, face in enumerate(result.faces)
        ]
        return dataclasses.replace(result, faces=faces)

    def _expire_idle_cameras(self, step: _Step, now: float) -> None:
        """End tracks of cameras that stopped delivering (a reconnecting source): by wall clock."""
        for camera, (wall, captured) in self._last_result_at.items():
            idle = now - wall
            if idle > self.config.tracker.max_gap_s:
                step.add(self._tracker(camera).expire(captured + idle), camera)

    def _tracker(self, camera: str) -> CameraTracker:
        if camera not in self.trackers:
            keep = self.settings.indexer.unknowns.per_track
            self.trackers[camera] = CameraTracker(
                camera,
                self.config.tracker,
                self.run_token,
                keep,
                self._attributes,
                self.config.events.thumbnails,
                self._expression if camera in self._expression_cameras else None,
                keep_unknown_images=self.settings.indexer.unknowns.keep_images,
                chip_attributes=self._chip_attributes,
            )
        return self.trackers[camera]
