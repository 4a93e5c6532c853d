"""Erasing a person from every store, so that deletion means deletion.

The gallery in Redis is the system of record: search indexes in every process follow its
version counter and drop the person on their next query. Beside it are stores about the
person: hard negatives and feedback (``indexer.corrections``), unknown clusters enrolled
as them (``indexer.unknowns``; with whatever an interrupted enrolment left of their tracks,
face images included), their aging opt-in (``indexer.aging``), their history and templates,
the service's streams (``StreamKeys``: events naming them, workers' results holding their
face's embedding), the tracker's open tracks of them (a hash, one field per track), the
thumbnails of the events of every track matched to them (``streamer.events.thumbnails``:
face images, found through a set per person, ``StreamKeys.thumbnails_of``), the API's audit
entries about them, keys named after them (the tracker's cooldowns), and kept enrolment photos
on disk.

The person's keys, and the version bump that makes searchers reload, go in one script
(``indexer.deletions``) whose first writes are deletions: a full Redis (``maxmemory``),
which refuses every MULTI/EXEC, runs it, and deleting is what frees it. Each stream is
rewritten without the entries about them by a script of its own, streams first, so that a
crash in between leaves the person enrolled and running the erasure again finishes it.
The tracker's tracks go after the version bump: a running tracker checks the version in each
commit and drops its tracks of erased people first, so none can be written back afterwards.
Thumbnails go with the person's keys, and again after the bump: a tracker may have committed
one between the plan and the bump.
Then Redis's files are rewritten (``rewrite_persistence``: BGREWRITEAOF, BGSAVE, waited
for), so the erased embeddings are gone from its disk too, not only from its memory.

Logs name identity ids, never names: a log file outlives the erasure.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import redis

from indexer.aging import OPTED_IN_KEY
from indexer.corrections import Corrections
from indexer.deletions import Deletions, purge_hash, purge_set_keys, purge_stream
from indexer.gallery import MAX_TRANSACTION_ATTEMPTS, Gallery
from indexer.sources import SourceStore
from indexer.unknowns import UnknownStore
from vigil.api.audit import AUDIT_STREAM
from vigil.config import Settings
from vigil.errors import GalleryError
from vigil.streams import redis_errors, text

logger = logging.getLogger(__name__)

# A rewrite of a large AOF can take minutes on a slow disk; past this, erasure reports failure.
PERSISTENCE_TIMEOUT_S = 600.0
_POLL_S = 0.05
_SCAN_BATCH = 1000


@dataclass(frozen=True)
class StreamKeys:
    """The service's keys that may name a person: ``streamer.events.stream``,
    ``streamer.bus.faces_stream`` and, beside the latter, the tracker's hash of open tracks; their
    keys are the settings', not the gallery namespace's."""

    events: str
    faces: str

    @property
    def tracks(self) -> str:
        """The tracker's open tracks, one hash field (the track's JSON) per track id."""
        return f"{self.faces}:tracker:tracks"

    @property
    def learning(self) -> str:
        """Track outcomes published but not yet learnt from, one hash field per event id."""
        return f"{self.faces}:tracker:learning"

    def thumbnail(self, event_id: str) -> str:
        """An event's thumbnail (``streamer.events.thumbnails``): the JPEG of its face."""
        return f"{self.events}:thumb:{event_id}"

    def thumbnails_of(self, identity_id: str) -> str:
        """The set of the thumbnail keys of every track matched to this person, for erasure."""
        return f"{self.events}:thumbs:{identity_id}"

    @property
    def chips_pattern(self) -> str:
        """Face chips waiting for the tracker (``attribute_model: fine_tuned``, ``analysis.chips_key_for``):
        they name nobody, so erasure deletes them all (in-flight tracks lose their age and gender)."""
        return f"{self.faces}:chips:*"

    @property
    def webhook_bodies_pattern(self) -> str:
        """Event bodies waiting in the webhooks bridge's queues, one hash per endpoint
        (``streamer.bridges.webhook_queue``); a pattern, so endpoints removed from the config count too."""
        return f"{self.events}:webhooks:*:bodies"

    @classmethod
    def from_settings(cls, settings: Settings) -> StreamKeys:
        return cls(settings.streamer.events.stream, settings.streamer.bus.faces_stream)


def claim_thumbnails(
    client: redis.Redis, keys: StreamKeys, identity_id: str, event_ids: Sequence[str]
) -> int:
    """Link events' thumbnails to a person the user said they show (feedback, an enrolled
    cluster), so that erasing the person deletes them too; returns how many were linked.

    The person's set lives as long as the longest-lived thumbnail it names.
    """
    thumbnails = [keys.thumbnail(event_id) for event_id in event_ids]
    if not thumbnails:
        return 0
    set_key = keys.thumbnails_of(identity_id)
    with redis_errors(), client.pipeline(transaction=False) as pipe:
        for key in [*thumbnails, set_key]:
            pipe.pttl(key)
        *lives, set_life = cast(list[int], pipe.execute())
    kept = [(key, life) for key, life in zip(thumbnails, lives, strict=True) if life > 0]
    if not kept:
        return 0
    with redis_errors(), client.pipeline(transaction=True) as pipe:
        pipe.sadd(set_key, *[key for key, _ in kept])
        pipe.pexpire(set_key, max(set_life, *(life for _, life in kept)))
        pipe.execute()
    return len(kept)


@dataclass(frozen=True)
class Erasure:
    """What erasing a person removed.

    Attributes:
        name: Their name (for the CLI to confirm; never logged).
        templates: Templates, every embedder version.
        photos: Kept enrolment photos.
        negatives: Hard negatives.
        feedback: Feedback records about them.
        clusters: Unknown clusters enrolled as them.
        events: Events naming them.
        results: Workers' results holding a face taken for them.
        keys: Other keys named after them (cooldowns).
        tracks: The tracker's open tracks of them, and outcomes of theirs not yet learnt from.
        thumbnails: Thumbnails of the events of tracks matched to them.
        rewritten: Redis files rewritten without them (``aof``, ``rdb``).
    """

    name: str
    templates: int
    photos: int
    negatives: int = 0
    feedback: int = 0
    clusters: int = 0
    events: int = 0
    results: int = 0
    keys: int = 0
    rewritten: tuple[str, ...] = ()
    tracks: int = 0
    thumbnails: int = 0


def erase_person(
    gallery: Gallery,
    sources: SourceStore,
    identity_id: str,
    streams: StreamKeys | None = None,
    *,
    rewrite_files: bool = True,
) -> Erasure:
    """Remove a person and everything kept about them (see the module docstring).

    Args:
        gallery: The gallery (its client reaches the streams too).
        sources: Kept enrolment photos.
        identity_id: Who.
        streams: The service's streams to purge; None leaves streams alone (a gallery without
            a service).
        rewrite_files: Rewrite Redis's AOF and snapshot afterwards and wait for them.

    Raises:
        GalleryError: Unknown identity (nothing is removed then), or Redis's files could not
            be rewritten (the person is erased from Redis then, the message says what is left).
    """
    client = gallery.client
    name = gallery.get_identity(identity_id).name
    mentions = _mentions(identity_id, name)
    # Streams first: a crash before the person's own keys go leaves them enrolled, and
    # running the erasure again finishes it (the other way round, nobody could name them).
    events, results = _purge_streams(gallery, streams, mentions)
    for _ in range(MAX_TRANSACTION_ATTEMPTS):
        plan = _plan(gallery, identity_id, streams)
        if plan.deletions is None:
            raise GalleryError(f"unknown identity id {identity_id!r}")
        if _apply(gallery, plan.deletions, plan.version):
            break
    else:
        raise GalleryError(f"the gallery changed {MAX_TRANSACTION_ATTEMPTS} times while erasing; retry later")
    # Entries published while this ran (a running service may have named them meanwhile).
    late_events, late_results = _purge_streams(gallery, streams, mentions)
    # The API's audit trail names people by id: their entries go with them.
    gallery.call(functools.partial(purge_stream, client, AUDIT_STREAM, [identity_id]))
    tracks, thumbnails = 0, plan.thumbnails
    if streams is not None:  # after the version bump: see the module docstring
        for key in (streams.tracks, streams.learning):
            tracks += gallery.call(functools.partial(purge_hash, client, key, mentions))
        # Events waiting for a webhook: the bridge skips (and forgets) an entry whose body is gone.
        pattern = streams.webhook_bodies_pattern
        for queued in gallery.call(lambda: list(client.scan_iter(match=pattern, count=_SCAN_BATCH))):
            late_events += gallery.call(functools.partial(purge_hash, client, text(queued), mentions))
        chips = gallery.call(lambda: list(client.scan_iter(match=streams.chips_pattern, count=_SCAN_BATCH)))
        if chips:
            gallery.call(functools.partial(client.delete, *chips))
        late = functools.partial(purge_set_keys, client, streams.thumbnails_of(identity_id))
        thumbnails += gallery.call(late)
    photos = sources.erase(identity_id)
    rewritten = rewrite_persistence(client) if rewrite_files else ()
    erasure = Erasure(
        name, plan.templates, photos, plan.negatives, plan.feedback, plan.clusters,
        events + late_events, results + late_results, len(plan.named_keys), rewritten, tracks, thumbnails,
    )  # fmt: skip
    logger.info(
        "erased identity %s: %d templates, %d negatives, %d feedback, %d clusters, %d kept photos, "
        "%d events, %d results, %d keys, %d open tracks, %d thumbnails; rewrote %s",
        identity_id, erasure.templates, erasure.negatives, erasure.feedback, erasure.clusters, erasure.photos,
        erasure.events, erasure.results, erasure.keys, erasure.tracks, erasure.thumbnails,
        ", ".join(rewritten) or "no files",
    )  # fmt: skip
    return erasure


def erase_person_named(
    settings: Settings, name: str, *, gallery: Gallery | None = None, rewrite_files: bool = True
) -> Erasure:
    """Erase the person called ``name`` from every store the settings name (``vigil people delete``).

    Args:
        settings: Where the gallery, streams and kept photos are.
        name: Who.
        gallery: The gallery to erase from when the caller holds one (the API's connection);
            None opens the settings' own.
        rewrite_files: Rewrite Redis's files afterwards (see ``erase_person``).

    Raises:
        GalleryError: Nobody is enrolled under that name, or Redis's files could not be rewritten.
    """
    gallery = gallery if gallery is not None else Gallery.from_settings(settings)
    identity_id = gallery.get_by_name(name).identity_id
    return erase_person(
        gallery,
        SourceStore.from_settings(settings),
        identity_id,
        StreamKeys.from_settings(settings),
        rewrite_files=rewrite_files,
    )


def rewrite_persistence(client: redis.Redis, timeout_s: float = PERSISTENCE_TIMEOUT_S) -> tuple[str, ...]:
    """Rewrite Redis's append-only file and snapshot from memory, and wait for both.

    Deleted keys stay in the AOF (as the commands that wrote them) and in the last snapshot
    until these are rewritten. A rewrite already running may have started before the
    deletion, so it is waited for and one more is started.

    Returns:
        What was rewritten: ``aof`` when append-only persistence is on, ``rdb`` when snapshots
        are (``save`` points set, or CONFIG unavailable to tell).

    Raises:
        GalleryError: Redis refused or failed a rewrite, or it took over ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    rewritten: list[str] = []
    try:
        with redis_errors():
            if client.info("persistence").get("aof_enabled"):
                _background(client, "aof", deadline)
                rewritten.append("aof")
            if _snapshots_on(client):
                _background(client, "rdb", deadline)
                rewritten.append("rdb")
    except redis.ResponseError as exc:
        raise GalleryError(
            f"the person is erased from Redis, but Redis could not rewrite its files ({exc}); their "
            "embeddings stay on its disk until BGREWRITEAOF and BGSAVE succeed: run them"
        ) from exc
    return tuple(rewritten)


# -- private ----------------------------------------------------------------------------------


def _background(client: redis.Redis, kind: str, deadline: float) -> None:
    """Run one AOF rewrite (``aof``) or snapshot (``rdb``) that starts after now, to its end."""
    _wait_idle(client, deadline)  # one already running may predate the deletion
    while True:
        try:
            if kind == "aof":
                client.bgrewriteaof()
            else:
                client.bgsave()
            break
        except redis.ResponseError as exc:
            if "in progress" not in str(exc):  # another process's, just started: wait, then ours
                raise
            _wait_idle(client, deadline)
    _wait_idle(client, deadline)
    info = client.info("persistence")
    status = info.get("aof_last_bgrewrite_status" if kind == "aof" else "rdb_last_bgsave_status")
    if status != "ok":
        raise redis.ResponseError(
            f"the last {'AOF rewrite' if kind == 'aof' else 'snapshot'} failed ({status})"
        )


def _wait_idle(client: redis.Redis, deadline: float) -> None:
    while True:
        info = client.info("persistence")
        busy = info.get("aof_rewrite_in_progress") or info.get("aof_rewrite_scheduled")
        if not (busy or info.get("rdb_bgsave_in_progress")):
            return
        if time.monotonic() > deadline:
            raise redis.ResponseError("a rewrite of Redis's files did not finish in time")
        time.sleep(_POLL_S)


def _snapshots_on(client: redis.Redis) -> bool:
    try:
        save = cast(dict[str, str], client.config_get("save")).get("save", "")
    except redis.ResponseError:  # CONFIG renamed or forbidden (managed Redis): assume snapshots
        return True
    return bool(str(save).strip())


@dataclass
class _Plan:
    """What erasing a person deletes, read at gallery version ``version``."""

    version: bytes | None
    deletions: Deletions | None  # None: no such identity
    templates: int = 0
    negatives: int = 0
    feedback: int = 0
    clusters: int = 0
    named_keys: list[str] = field(default_factory=list)
    thumbnails: int = 0


def _plan(gallery: Gallery, identity_id: str, streams: StreamKeys | None) -> _Plan:
    """Read every store's deletions for the person (the script refuses them if the version moved)."""
    client = gallery.client
    thumbnails_key = None if streams is None else streams.thumbnails_of(identity_id)

    def read() -> _Plan:
        with client.pipeline(transaction=True) as pipe:
            pipe.watch(gallery.version_key)  # type: ignore[no-untyped-call]  # immediate mode, for reads
            version = cast(bytes | None, pipe.get(gallery.version_key))
            try:
                _, templates, deletions = gallery.plan_identity_deletion(pipe, identity_id)
            except GalleryError:
                return _Plan(version, None)
            negatives, feedback, correction_deletions = Corrections(gallery).plan_erase(pipe, identity_id)
            thumbnails: list[str] = []
            if thumbnails_key is not None:
                thumbnails = sorted(
                    member.decode() for member in cast(set[bytes], pipe.smembers(thumbnails_key))
                )
            # Those not expired yet, for the count (deleting an expired one is harmless).
            kept = int(pipe.exists(*thumbnails)) if thumbnails else 0
            pipe.reset()
        # retention: erasure only deletes
        clusters, cluster_deletions = UnknownStore(gallery, retention_s=0.0).plan_erase(identity_id)
        named = [key.decode() for key in client.scan_iter(match=f"*{identity_id}*", count=_SCAN_BATCH)]
        named = [key for key in named if key != thumbnails_key]  # counted as thumbnails
        deletions.extend(correction_deletions).extend(cluster_deletions)
        deletions.set_members.append((gallery.key(OPTED_IN_KEY), [identity_id]))
        # The set itself stays for the sweep after the version bump (``purge_set_keys``): a
        # tracker commit between this read and the bump may add a thumbnail to it.
        deletions.keys += named + thumbnails
        return _Plan(version, deletions, templates, negatives, feedback, clusters, named, kept)

    return gallery.call(read)


def _mentions(identity_id: str, name: str) -> list[str]:
    """What marks a stream entry as about the person: their id anywhere (also as a runner-up
    candidate), or their name as a JSON ``name`` field (events: compact, UTF-8; results:
    ``json.dumps``, ASCII-escaped)."""
    names = dict.fromkeys([json.dumps(name), json.dumps(name, ensure_ascii=False)])
    return [identity_id] + [f'"name":{separator}{quoted}' for quoted in names for separator in ("", " ")]


def _purge_streams(gallery: Gallery, streams: StreamKeys | None, mentions: list[str]) -> tuple[int, int]:
    """Events and results about the person, removed from the streams; how many of each."""
    if streams is None:
        return 0, 0
    events = gallery.call(lambda: purge_stream(gallery.client, streams.events, mentions))
    results = gallery.call(lambda: purge_stream(gallery.client, streams.faces, mentions))
    return events, results


def _apply(gallery: Gallery, deletions: Deletions, planned_version: bytes | None) -> bool:
    """Run the planned deletions and bump the version; False when the gallery moved since the plan."""
    return (
        gallery.call(
            lambda: deletions.run(gallery.client, gallery.version_key, planned_version, gallery.channel)
        )
        is not None
    )
