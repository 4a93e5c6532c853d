"""Reviewing the unknown faces the stream kept: cluster them, list the clusters, show one's face,
enrol or forget one.

The use cases behind ``vigil unknowns`` and ``/api/v1/unknowns``: each takes the store
(``indexer.unknowns``) and returns typed results, which the CLI prints and the API serialises.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from indexer.erase import StreamKeys, claim_thumbnails
from indexer.records import Identity
from indexer.unknowns import UnknownCluster, UnknownStore, enroll_cluster
from vigil.config import Settings
from vigil.errors import GalleryError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterSummary:
    """One cluster as ``vigil unknowns list --json`` prints it (one JSON object per line).

    Attributes:
        cluster: The cluster number.
        tracks: Unknown tracks still kept in it.
        embeddings: Their kept face embeddings, all together.
        cameras: The cameras that saw them, sorted.
        first_seen: ISO-8601 UTC capture time of the earliest track's best face, None if none is kept.
        last_seen: The same, latest.
        event_ids: The events that refer to its tracks.
        enrolled_as: The identity id it was enrolled as, or None.
        clustered_at: ISO-8601 UTC time of clustering.
        images: How many of its tracks keep a face image (``indexer.unknowns.keep_images``).
    """

    cluster: int
    tracks: int
    embeddings: int
    cameras: list[str]
    first_seen: str | None
    last_seen: str | None
    event_ids: list[str]
    enrolled_as: str | None
    clustered_at: str
    images: int

    def to_json(self) -> dict[str, int | str | list[str] | None]:
        """The fields in the listing's order (the JSON row)."""
        return asdict(self)


@dataclass(frozen=True)
class Clustering:
    """What grouping the kept unknown tracks did.

    Attributes:
        tracks: Tracks grouped (those of the embedder in force).
        clusters: Clusters made.
        threshold: The cosine similarity they were grouped at.
    """

    tracks: int
    clusters: int
    threshold: float


@dataclass(frozen=True)
class ClusterEnrolment:
    """A cluster enrolled: who it became and how many templates it gave them.

    Attributes:
        cluster: The cluster number.
        identity: The person (new, or the enrolled one it was added to).
        templates: Templates added.
    """

    cluster: int
    identity: Identity
    templates: int


def open_store(settings: Settings) -> UnknownStore:
    """The unknown store on the settings' Redis, with the configured retention."""
    from indexer.gallery import Gallery

    return UnknownStore(Gallery.from_settings(settings), settings.indexer.unknowns.retention_s)


def embedder_version(settings: Settings) -> str:
    """The version of the embedder in force (the space unknown tracks are clustered in); loads nothing."""
    from vigil.models.pipeline import FacePipeline

    return FacePipeline.from_settings(settings).embedder.version


def cluster_threshold(settings: Settings, version: str) -> float:
    """``indexer.unknowns.cluster_threshold``, else the calibrated 1:1 rule (a gallery of one person).

    Raises:
        CalibrationError: No threshold is configured and the calibration cannot be read.
    """
    from indexer.calibration import CalibrationSource

    threshold = settings.indexer.unknowns.cluster_threshold
    if threshold is None:
        threshold = CalibrationSource(settings.indexer, settings.home, version).current(1).threshold
    return threshold


def cluster_unknowns(store: UnknownStore, settings: Settings) -> Clustering:
    """Group the kept unknown tracks of the embedder in force anew, replacing the clusters not enrolled."""
    version = embedder_version(settings)
    threshold = cluster_threshold(settings, version)
    clusters = store.cluster(version, threshold)
    return Clustering(sum(len(c.entries) for c in clusters), len(clusters), threshold)


def summarize_clusters(store: UnknownStore) -> list[ClusterSummary]:
    """Every kept cluster, by number, with what is kept of its tracks."""
    return [summarize(store, cluster) for cluster in store.clusters()]


def summarize(store: UnknownStore, cluster: UnknownCluster) -> ClusterSummary:
    """One cluster's summary."""
    sightings = [s for s in (store.entry(entry_id) for entry_id in cluster.entries) if s is not None]
    times = sorted(s.captured_at for s in sightings)
    return ClusterSummary(
        cluster=cluster.cluster_id,
        tracks=len(cluster.entries),
        embeddings=sum(len(s.embeddings) for s in sightings),
        cameras=sorted({s.camera for s in sightings}),
        first_seen=times[0] if times else None,
        last_seen=times[-1] if times else None,
        event_ids=[event_id for s in sightings for event_id in s.event_ids],
        enrolled_as=cluster.enrolled_as,
        clustered_at=cluster.created_at,
        images=store.count_images(cluster.entries),
    )


def representative_face(store: UnknownStore, cluster: UnknownCluster) -> bytes | None:
    """The JPEG of the cluster's best kept face (highest quality: detection score × size), or None.

    None when none of its tracks keeps an image (``indexer.unknowns.keep_images`` is opt-in).
    """
    images = store.images(cluster.entries)
    if not images:
        return None
    qualities = {
        entry_id: sighting.qualities[0] if sighting is not None and sighting.qualities else 0.0
        for entry_id, sighting in ((entry_id, store.entry(entry_id)) for entry_id in images)
    }
    return images[max(images, key=lambda entry_id: qualities[entry_id])]


def enrol_unknown_cluster(
    store: UnknownStore,
    version: str,
    cluster_id: int,
    name: str,
    *,
    add_to_existing: bool = True,
    stream_keys: StreamKeys | None = None,
) -> ClusterEnrolment:
    """Enrol a cluster as the person ``name`` (new, or with ``add_to_existing`` an enrolled one).

    Args:
        store: The unknown store.
        version: The embedder in force: a cluster of another's embeddings is refused.
        cluster_id: The cluster number.
        name: The person's name.
        add_to_existing: Whether a taken name adds the cluster to that person (the CLI) or is refused.
        stream_keys: Where event thumbnails are: those of the cluster's events are linked to the
            person, so that erasing them deletes these too.

    Raises:
        GalleryError: No such cluster, already enrolled, of another embedder, its tracks
            expired, or the name is taken and ``add_to_existing`` is False.
    """
    cluster = store.get_cluster(cluster_id)
    if cluster.embedder_version != version:
        raise GalleryError(
            f"cluster {cluster_id} holds {cluster.embedder_version} embeddings, the embedder now is "
            f"{version}; run `vigil unknowns cluster` again"
        )
    if not add_to_existing and store.gallery.find_by_name(name) is not None:
        raise GalleryError(f"the name {name!r} is taken; add the cluster to that person or choose another")
    sightings = [store.entry(entry_id) for entry_id in cluster.entries]
    event_ids = [
        event_id for sighting in sightings if sighting is not None for event_id in sighting.event_ids
    ]
    identity, count = enroll_cluster(store, cluster_id, name)
    if stream_keys is not None:
        claim_thumbnails(store.gallery.client, stream_keys, identity.identity_id, event_ids)
    return ClusterEnrolment(cluster_id, identity, count)
