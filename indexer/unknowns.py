"""Unknown faces: what the stream keeps of strangers, their clusters, and enrolling a cluster.

When the tracker announces an ``unknown`` track it keeps that track's best few embeddings
with camera, time and event ids, here; when the track ends still unknown, the entry is
refreshed with the best faces of the whole track. Images are kept only if the user opted in
(``indexer.unknowns.keep_images``): one small JPEG of the track's best face, in the entry's
own hash, so that whatever deletes the entry (expiry, ``forget``, enrolment, ``feedback
--is``, erasure) deletes the image with it. Enrolling consumes the entries, images
included: an image is not a template, and keeping photos of enrolled people is the
separate ``indexer.keep_sources`` opt-in. Everything expires after
``indexer.unknowns.retention_s`` (Redis key expiry, so nothing outlives it even if Vigil
never runs again). ``vigil unknowns cluster`` groups the entries (``indexer.clustering``)
into numbered clusters; ``vigil unknowns enroll CLUSTER NAME`` turns one into a person (or
more templates of one) and consumes its entries, keeping the cluster's record (ids, no
embeddings) until it expires or the person is erased.

Keys, under the gallery's namespace::

    unknown:{entry_id}            hash    camera, track_id, captured_at, embedder_version, dim,
                                          embeddings (K×D float32 bytes), qualities, event_ids (JSON),
                                          image (JPEG bytes; only with keep_images)
    unknowns                      zset    entry ids, score = time stored (Unix seconds)
    unknown:event:{event_id}      string  the entry id an event refers to
    unknown:cluster:{cluster_id}  hash    entries (JSON), created_at, threshold, embedder_version,
                                          enrolled_as
    unknown:clusters              zset    cluster ids, score = id
    unknown:cluster:next_id       string  INCR counter for cluster ids (never reused)
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import cast

import numpy as np
from redis.client import Pipeline

from indexer.clustering import cluster_tracks, track_means
from indexer.deletions import Deletions
from indexer.gallery import Gallery
from indexer.records import Identity, NewTemplate, blob, now
from vigil.errors import GalleryError
from vigil.streams import text
from vigil.typing import Embeddings

logger = logging.getLogger(__name__)

_CLUSTER_ID = re.compile(r"[0-9]{1,18}")
# Entry ids are event ids (uuid4 hex). They name files (`vigil unknowns list --images DIR`), so
# an id read back from Redis that could be a path ('../x', '/etc') is never used.
_ENTRY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# What an entry holds besides its image, read without the image (clustering reads every entry).
_SIGHTING_FIELDS = (
    "camera", "track_id", "captured_at", "embedder_version", "dim", "embeddings", "qualities", "event_ids",
)  # fmt: skip
_JPEG_START = b"\xff\xd8"


@dataclass(frozen=True)
class UnknownSighting:
    """What is kept of one unknown track.

    Attributes:
        entry_id: The id of the track's ``unknown`` event (or of its ``track_ended`` event).
        camera: Camera name.
        track_id: The track.
        captured_at: ISO-8601 UTC time of the track's best face.
        embedder_version: The backbone embedder of ``embeddings``.
        embeddings: ``(K, D)`` float32, best face first.
        qualities: Per face, detection score × face size (pixels) × frontal factor (head pose).
        event_ids: Events that refer to this track (``unknown``, ``track_ended``).
    """

    entry_id: str
    camera: str
    track_id: str
    captured_at: str
    embedder_version: str
    embeddings: Embeddings = field(repr=False)
    qualities: list[float]
    event_ids: list[str]


@dataclass(frozen=True)
class UnknownCluster:
    """A group of unknown tracks that look like one person.

    Attributes:
        cluster_id: Number shown by ``vigil unknowns list``.
        entries: The tracks' entry ids still kept (expired ones drop out).
        created_at: ISO-8601 UTC time of clustering.
        threshold: The similarity it was clustered at.
        embedder_version: Space of its embeddings.
        enrolled_as: The identity it was enrolled as, or None.
    """

    cluster_id: int
    entries: list[str]
    created_at: str
    threshold: float
    embedder_version: str
    enrolled_as: str | None = None


class UnknownStore:
    """Unknown tracks and their clusters, under a gallery's namespace, with expiry.

    Args:
        gallery: Whose namespace and Redis connection to use.
        retention_s: How long entries and clusters are kept (``indexer.unknowns.retention_s``).
    """

    def __init__(self, gallery: Gallery, retention_s: float) -> None:
        self.gallery = gallery
        self.retention_s = retention_s

    # -- entries --------------------------------------------------------------------------

    def keep(self, sighting: UnknownSighting, image: bytes | None = None) -> None:
        """Store (or refresh) an unknown track's embeddings, expiring after the retention period.

        Args:
            sighting: The track.
            image: A JPEG of its best face (``indexer.unknowns.keep_images``), or None. A
                refresh without one drops the image kept before.

        Raises:
            GalleryError: No embeddings, or ``image`` is not a JPEG.
        """
        if not is_entry_id(sighting.entry_id):
            raise GalleryError(f"invalid unknown track id {sighting.entry_id!r}: use an event id")
        if sighting.embeddings.ndim != 2 or len(sighting.embeddings) == 0:
            raise GalleryError(f"an unknown track needs (K, D) embeddings, got {sighting.embeddings.shape}")
        if image is not None and not image.startswith(_JPEG_START):
            raise GalleryError(f"the image of unknown track {sighting.track_id} is not a JPEG")
        gallery, ttl_ms = self.gallery, int(self.retention_s * 1000)
        fields: dict[str, str | int | bytes] = {
            "camera": sighting.camera,
            "track_id": sighting.track_id,
            "captured_at": sighting.captured_at,
            "embedder_version": sighting.embedder_version,
            "dim": int(sighting.embeddings.shape[1]),
            "embeddings": sighting.embeddings.astype("<f4").tobytes(),
            "qualities": json.dumps(sighting.qualities),
            "event_ids": json.dumps(sighting.event_ids),
        }
        if image is not None:
            fields["image"] = image

        def write() -> None:
            with gallery.client.pipeline(transaction=True) as pipe:
                pipe.delete(self._entry_key(sighting.entry_id))
                pipe.hset(self._entry_key(sighting.entry_id), mapping=fields)  # type: ignore[arg-type]
                pipe.pexpire(self._entry_key(sighting.entry_id), ttl_ms)
                # Stored time, as the key expiry counts: a replayed old clip is kept as long as a live one.
                pipe.zadd(gallery.key("unknowns"), {sighting.entry_id: time.time()})
                for event_id in sighting.event_ids:
                    pipe.set(gallery.key(f"unknown:event:{event_id}"), sighting.entry_id, px=ttl_ms)
                pipe.execute()

        gallery.call(write)
        logger.debug("kept %d embeddings of unknown track %s", len(sighting.embeddings), sighting.track_id)

    def entry(self, entry_id: str) -> UnknownSighting | None:
        """The kept track, or None when it expired or was consumed."""
        raw = self.gallery.call(
            lambda: self.gallery.client.hmget(self._entry_key(entry_id), _SIGHTING_FIELDS)
        )
        return _sighting(entry_id, cast(list[bytes | None], raw))

    def entry_for_event(self, event_id: str) -> UnknownSighting | None:
        """The kept track an event refers to, or None."""
        entry_id = self.gallery.call(
            lambda: self.gallery.client.get(self.gallery.key(f"unknown:event:{event_id}"))
        )
        return None if entry_id is None else self.entry(text(entry_id))

    def entries(self) -> list[UnknownSighting]:
        """Every kept track, first stored first (expired ones are dropped from the index here)."""
        gallery = self.gallery

        def read() -> tuple[list[str], list[list[bytes | None]]]:
            oldest = time.time() - self.retention_s
            gallery.client.zremrangebyscore(gallery.key("unknowns"), "-inf", f"({oldest}")
            entry_ids = [
                text(raw) for raw in cast(list[bytes], gallery.client.zrange(gallery.key("unknowns"), 0, -1))
            ]
            with gallery.client.pipeline(transaction=False) as pipe:
                for entry_id in entry_ids:
                    pipe.hmget(self._entry_key(entry_id), _SIGHTING_FIELDS)
                return entry_ids, list(pipe.execute())

        entry_ids, hashes = gallery.call(read)
        found = [
            _sighting(entry_id, raw) if is_entry_id(entry_id) or _refused(entry_id) else None
            for entry_id, raw in zip(entry_ids, hashes, strict=True)
        ]
        gone = [entry_id for entry_id, sighting in zip(entry_ids, found, strict=True) if sighting is None]
        if gone:
            gallery.call(lambda: gallery.client.zrem(gallery.key("unknowns"), *gone))
        return [sighting for sighting in found if sighting is not None]

    def images(self, entry_ids: list[str]) -> dict[str, bytes]:
        """The kept JPEGs of these tracks' best faces, by entry id (tracks without one are left out)."""
        gallery = self.gallery

        def read() -> list[bytes | None]:
            with gallery.client.pipeline(transaction=False) as pipe:
                for entry_id in entry_ids:
                    pipe.hget(self._entry_key(entry_id), "image")
                return list(pipe.execute())

        entry_ids = [entry_id for entry_id in entry_ids if is_entry_id(entry_id) or _refused(entry_id)]
        found = gallery.call(read) if entry_ids else []
        return {entry_id: raw for entry_id, raw in zip(entry_ids, found, strict=True) if raw}

    def count_images(self, entry_ids: list[str]) -> int:
        """How many of these tracks keep an image (without reading them)."""
        gallery = self.gallery

        def read() -> list[bool]:
            with gallery.client.pipeline(transaction=False) as pipe:
                for entry_id in entry_ids:
                    pipe.hexists(self._entry_key(entry_id), "image")
                return list(pipe.execute())

        return sum(gallery.call(read)) if entry_ids else 0

    def consume_entries(self, entry_ids: list[str]) -> None:
        """Delete kept tracks (they became templates or were forgotten), images and event links too."""
        sightings = [s for s in (self.entry(entry_id) for entry_id in entry_ids) if s is not None]
        gallery = self.gallery

        def work() -> None:
            with gallery.client.pipeline(transaction=True) as pipe:
                for sighting in sightings:
                    pipe.delete(self._entry_key(sighting.entry_id))
                    pipe.zrem(gallery.key("unknowns"), sighting.entry_id)
                    for event_id in sighting.event_ids:
                        pipe.delete(gallery.key(f"unknown:event:{event_id}"))
                pipe.execute()

        gallery.call(work)

    # -- clusters -------------------------------------------------------------------------

    def cluster(self, embedder_version: str, threshold: float) -> list[UnknownCluster]:
        """Group the kept tracks of one embedder anew; replaces the clusters not yet enrolled.

        Returns:
            The new clusters, largest first (ids continue from earlier runs, never reused).
        """
        sightings = [s for s in self.entries() if s.embedder_version == embedder_version]
        labels = (
            cluster_tracks(track_means([s.embeddings for s in sightings]), threshold) if sightings else ()
        )
        groups: dict[int, list[str]] = {}
        for sighting, label in zip(sightings, labels, strict=True):
            groups.setdefault(int(label), []).append(sighting.entry_id)
        self.forget_all()
        gallery, ttl_ms, created = self.gallery, int(self.retention_s * 1000), now()
        clusters = []
        for label in sorted(groups):
            cluster_id = int(
                gallery.call(lambda: gallery.client.incr(gallery.key("unknown:cluster:next_id")))
            )
            clusters.append(UnknownCluster(cluster_id, groups[label], created, threshold, embedder_version))

        def write() -> None:
            with gallery.client.pipeline(transaction=True) as pipe:
                for cluster in clusters:
                    self._queue_cluster(pipe, cluster, ttl_ms)
                pipe.execute()

        gallery.call(write)
        logger.info(
            "%d unknown tracks grouped into %d clusters at %.4f", len(sightings), len(clusters), threshold
        )
        return clusters

    def clusters(self) -> list[UnknownCluster]:
        """Every kept cluster, by id; entries that expired are left out."""
        gallery = self.gallery
        cluster_ids = [
            int(cast(bytes, raw))
            for raw in gallery.call(lambda: gallery.client.zrange(gallery.key("unknown:clusters"), 0, -1))
        ]
        found = [self._read_cluster(cluster_id) for cluster_id in cluster_ids]
        return [cluster for cluster in found if cluster is not None]

    def find_cluster(self, cluster_id: int) -> UnknownCluster | None:
        """One cluster, or None when it was never made, was forgotten or expired."""
        return self._read_cluster(cluster_id)

    def get_cluster(self, cluster_id: int) -> UnknownCluster:
        """One cluster.

        Raises:
            GalleryError: No such cluster (never made, forgotten or expired).
        """
        cluster = self.find_cluster(cluster_id)
        if cluster is None:
            raise GalleryError(
                f"no unknown cluster {cluster_id} (forgotten or expired); see `vigil unknowns list`"
            )
        return cluster

    def mark_enrolled(self, cluster: UnknownCluster, identity_id: str) -> None:
        """Record that ``cluster`` became ``identity_id`` and consume its entries."""
        gallery = self.gallery
        gallery.call(
            lambda: gallery.client.hset(self._cluster_key(cluster.cluster_id), "enrolled_as", identity_id)
        )
        self.consume_entries(cluster.entries)

    def forget(self, cluster_id: int) -> UnknownCluster:
        """Delete a cluster and the kept tracks in it.

        Raises:
            GalleryError: No such cluster.
        """
        cluster = self.get_cluster(cluster_id)
        self.consume_entries(cluster.entries)
        self._delete_clusters([cluster_id])
        return cluster

    def forget_all(self, *, entries: bool = False) -> int:
        """Delete the clusters not enrolled, and with ``entries`` every kept track too.

        Returns:
            How many clusters were deleted.
        """
        doomed = [cluster.cluster_id for cluster in self.clusters() if cluster.enrolled_as is None]
        if entries:
            self.consume_entries([sighting.entry_id for sighting in self.entries()])
        self._delete_clusters(doomed)
        return len(doomed)

    def erase(self, identity_id: str) -> int:
        """Delete the clusters enrolled as this identity, and what is left of their tracks; how many."""
        clusters, deletions = self.plan_erase(identity_id)
        gallery = self.gallery

        def work() -> None:
            with gallery.client.pipeline(transaction=True) as pipe:
                deletions.queue(pipe)
                pipe.execute()

        gallery.call(work)
        return clusters

    def plan_erase(self, identity_id: str) -> tuple[int, Deletions]:
        """What erasing an identity deletes here: the clusters enrolled as them, and what is left
        of those clusters' tracks (enrolment consumed them, unless it was interrupted between
        marking and consuming; images too).

        Returns:
            How many clusters, and the deletions.
        """
        doomed = [cluster for cluster in self.clusters() if cluster.enrolled_as == identity_id]
        entry_ids = [entry_id for cluster in doomed for entry_id in cluster.entries if is_entry_id(entry_id)]
        sightings = [s for s in (self.entry(entry_id) for entry_id in entry_ids) if s is not None]
        gallery = self.gallery
        deletions = Deletions(
            keys=[self._entry_key(entry_id) for entry_id in entry_ids]
            + [gallery.key(f"unknown:event:{event_id}") for s in sightings for event_id in s.event_ids]
            + [self._cluster_key(cluster.cluster_id) for cluster in doomed],
            zset_members=[
                (gallery.key("unknowns"), list(entry_ids)),
                (gallery.key("unknown:clusters"), [cluster.cluster_id for cluster in doomed]),
            ],
        )
        return len(doomed), deletions

    # -- private --------------------------------------------------------------------------

    def _entry_key(self, entry_id: str) -> str:
        return self.gallery.key(f"unknown:{entry_id}")

    def _cluster_key(self, cluster_id: int) -> str:
        return self.gallery.key(f"unknown:cluster:{cluster_id}")

    def _queue_cluster(self, pipe: Pipeline, cluster: UnknownCluster, ttl_ms: int) -> None:
        key = self._cluster_key(cluster.cluster_id)
        pipe.hset(
            key,
            mapping={
                "entries": json.dumps(cluster.entries),
                "created_at": cluster.created_at,
                "threshold": cluster.threshold,
                "embedder_version": cluster.embedder_version,
            },
        )
        pipe.pexpire(key, ttl_ms)
        pipe.zadd(self.gallery.key("unknown:clusters"), {str(cluster.cluster_id): cluster.cluster_id})

    def _read_cluster(self, cluster_id: int) -> UnknownCluster | None:
        gallery = self.gallery
        raw = gallery.call(lambda: gallery.client.hgetall(self._cluster_key(cluster_id)))
        if not raw:
            gallery.call(lambda: gallery.client.zrem(gallery.key("unknown:clusters"), cluster_id))
            return None
        fields = {text(key): text(value) for key, value in raw.items()}
        entries = json.loads(fields["entries"])
        enrolled_as = fields.get("enrolled_as")
        if enrolled_as is None:
            live = gallery.call(
                lambda: [gallery.client.exists(self._entry_key(entry_id)) for entry_id in entries]
            )
            entries = [entry_id for entry_id, alive in zip(entries, live, strict=True) if alive]
            if not entries:
                return None
        return UnknownCluster(
            cluster_id,
            entries,
            fields["created_at"],
            float(fields["threshold"]),
            fields["embedder_version"],
            enrolled_as,
        )

    def _delete_clusters(self, cluster_ids: list[int]) -> None:
        if not cluster_ids:
            return
        gallery = self.gallery

        def work() -> None:
            with gallery.client.pipeline(transaction=True) as pipe:
                pipe.delete(*[self._cluster_key(cluster_id) for cluster_id in cluster_ids])
                pipe.zrem(gallery.key("unknown:clusters"), *cluster_ids)
                pipe.execute()

        gallery.call(work)


def is_entry_id(entry_id: str) -> bool:
    """Whether an unknown track's id is well-formed (safe as a file name)."""
    return _ENTRY_ID.fullmatch(entry_id) is not None


def _refused(entry_id: str) -> bool:
    """Log a malformed entry id read from Redis (another writer's, or tampering); False: skip it."""
    logger.warning("skipping unknown track with malformed id %r (not an event id)", entry_id[:80])
    return False


def parse_cluster_id(raw: str) -> int:
    """A cluster number typed by a user.

    Raises:
        GalleryError: Not a number.
    """
    if not _CLUSTER_ID.fullmatch(raw.strip()):
        raise GalleryError(f"malformed cluster id {raw!r}: use a cluster number from `vigil unknowns list`")
    return int(raw)


def enroll_cluster(store: UnknownStore, cluster_id: int, name: str) -> tuple[Identity, int]:
    """Make a cluster's tracks a person named ``name`` (new, or existing: more templates of them).

    Every kept embedding of the cluster becomes a template (origin ``unknowns``, with its
    track's event id and capture time); the entries are consumed.

    Returns:
        The identity and how many templates were added.

    Raises:
        GalleryError: Unknown cluster, already enrolled, or its tracks all expired; bad name.
    """
    cluster = store.get_cluster(cluster_id)
    if cluster.enrolled_as is not None:
        raise GalleryError(f"unknown cluster {cluster_id} is already enrolled; cluster again for new tracks")
    templates = [
        NewTemplate(
            embedder_version=sighting.embedder_version,
            embedding=vector,
            source=f"unknowns cluster {cluster_id}, camera {sighting.camera}",
            quality=quality,
            captured_at=sighting.captured_at,
            origin="unknowns",
            event_id=sighting.entry_id,
        )
        for sighting in (store.entry(entry_id) for entry_id in cluster.entries)
        if sighting is not None
        for vector, quality in zip(sighting.embeddings, sighting.qualities, strict=True)
    ]
    if not templates:
        raise GalleryError(f"the tracks of unknown cluster {cluster_id} have expired; nothing to enrol")
    gallery = store.gallery
    existing = gallery.find_by_name(name)
    if existing is None:
        identity, _ = gallery.enroll(name, templates)
    else:
        gallery.add_templates(existing.identity_id, templates)
        identity = existing
    store.mark_enrolled(cluster, identity.identity_id)
    logger.info(
        "unknown cluster %d enrolled as %s (%d templates)", cluster_id, identity.identity_id, len(templates)
    )
    return identity, len(templates)


def _sighting(entry_id: str, raw: list[bytes | None]) -> UnknownSighting | None:
    """An entry from its ``_SIGHTING_FIELDS`` values; None when it is gone (every value None)."""
    if any(value is None for value in raw):
        return None
    fields = dict(zip(_SIGHTING_FIELDS, cast(list[bytes], raw), strict=True))
    dim = int(fields["dim"])
    vectors = np.frombuffer(blob(fields["embeddings"]), dtype="<f4").astype(np.float32)
    return UnknownSighting(
        entry_id=entry_id,
        camera=text(fields["camera"]),
        track_id=text(fields["track_id"]),
        captured_at=text(fields["captured_at"]),
        embedder_version=text(fields["embedder_version"]),
        embeddings=vectors.reshape(-1, dim),
        qualities=[float(q) for q in json.loads(fields["qualities"])],
        event_ids=[str(e) for e in json.loads(fields["event_ids"])],
    )
