"""What the stream learns and users correct: unknown clusters, feedback on events, a person's history.

The routes of ``vigil unknowns``, ``vigil feedback`` and ``vigil people history``; the use cases
are ``indexer.unknown_review``, ``streamer.feedback`` and ``indexer.corrections``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Body, Response
from pydantic import BaseModel, Field

from vigil.api.audit import record_change
from vigil.api.context import API_PREFIX, AdminKey, ApiContext, Context, ReadKey, require_person
from vigil.api.errors import ERROR_RESPONSES, ApiError
from vigil.api.routes.people import PersonOut, person_out
from vigil.errors import VigilError

if TYPE_CHECKING:
    from indexer.history import HistoryEntry
    from indexer.unknown_review import ClusterSummary
    from indexer.unknowns import UnknownCluster, UnknownStore

router = APIRouter(prefix=API_PREFIX, responses=ERROR_RESPONSES, tags=["learning"])

FACE_CACHE_CONTROL = "private, no-store"
"""A stranger's face: not kept by browsers or proxies (the server's copy expires, theirs would not)."""


class UnknownClusterOut(BaseModel):
    cluster: int = Field(description="The cluster number (never reused).")
    tracks: int = Field(description="Unknown tracks still kept in it.")
    embeddings: int = Field(description="Their kept face embeddings, all together.")
    cameras: list[str]
    first_seen: str | None = Field(description="ISO-8601 UTC; null when no track is kept.")
    last_seen: str | None
    event_ids: list[str] = Field(description="Events that refer to its tracks (`unknown`, `track_ended`).")
    enrolled_as: str | None = Field(description="The identity id it was enrolled as, or null.")
    clustered_at: str = Field(description="ISO-8601 UTC.")
    images: int = Field(description="Tracks keeping a face image (`indexer.unknowns.keep_images`, opt-in).")
    face_url: str | None = Field(description="Its representative face (JPEG), or null when no image is kept.")


class UnknownsOut(BaseModel):
    items: list[UnknownClusterOut] = Field(description="Every kept cluster, by number.")


class ClusteringOut(UnknownsOut):
    tracks: int = Field(description="Unknown tracks grouped now (those of the embedder in force).")
    threshold: float = Field(description="Cosine similarity they were grouped at (higher = stricter).")


class ClusterEnrolIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="The person's name.")
    add_to_existing: bool = Field(
        default=False,
        description="Add the cluster to the person already enrolled under `name` (else a taken name is 409).",
    )


class ClusterEnrolmentOut(BaseModel):
    cluster: int
    person: PersonOut
    templates: int = Field(description="Templates added (every kept embedding of the cluster).")


class ForgottenOut(BaseModel):
    cluster: int
    tracks: int = Field(description="Kept tracks deleted with it (embeddings and images).")


class FeedbackIn(BaseModel):
    event_id: str = Field(description="The event's `event_id` (32 hex digits).")
    verdict: Literal["is", "not"] = Field(description="`is`: the face is `name`; `not`: it is not.")
    name: str = Field(min_length=1, max_length=200, description="An enrolled person's name.")


class FeedbackOut(BaseModel):
    feedback_id: str
    event_id: str
    verdict: Literal["is", "not"]
    identity_id: str
    name: str
    item: Literal["template", "negative"] = Field(description="What the correction made.")
    item_id: int = Field(description="The template's (`is`) or hard negative's (`not`) id.")
    created_at: str = Field(description="ISO-8601 UTC.")


class HistoryEntryOut(BaseModel):
    entry: int = Field(description="Number in the person's history, from 1 (what undo takes).")
    at: str = Field(description="ISO-8601 UTC.")
    action: Literal["added", "removed"]
    item: Literal["template", "negative"]
    item_id: int
    origin: str = Field(description="`enrol`, `aging`, `feedback`, `unknowns`, or `undo` for a reversal.")
    event_id: str | None = Field(description="The event behind the change, if any.")
    note: str


class HistoryOut(BaseModel):
    items: list[HistoryEntryOut] = Field(
        description="Every change to their templates and negatives, oldest first."
    )


@router.get("/unknowns", response_model=UnknownsOut)
def unknowns(context: Context, key: ReadKey) -> UnknownsOut:
    """The clusters of unknown faces (`vigil unknowns list --json`); run clustering first."""
    from indexer.unknown_review import summarize_clusters

    return UnknownsOut(items=[_cluster_out(summary) for summary in summarize_clusters(_store(context))])


@router.post("/unknowns/cluster", response_model=ClusteringOut)
def group_unknowns(context: Context, key: AdminKey) -> ClusteringOut:
    """Group the kept unknown tracks now (`vigil unknowns cluster`), replacing the clusters not enrolled."""
    from indexer.unknown_review import cluster_unknowns, summarize_clusters

    store = _store(context)
    clustering = cluster_unknowns(store, context.settings)
    record_change(context.client, key.name, "unknowns.cluster", "unknowns")
    items = [_cluster_out(summary) for summary in summarize_clusters(store)]
    return ClusteringOut(items=items, tracks=clustering.tracks, threshold=clustering.threshold)


@router.get(
    "/unknowns/{cluster}/face",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "The cluster's best kept face."}},
)
def unknown_face(cluster: str, context: Context, key: ReadKey) -> Response:
    """A JPEG of the cluster's representative face; 404 when none is kept (`keep_images` is opt-in)."""
    from indexer.unknown_review import representative_face

    store = _store(context)
    found = _require_cluster(store, cluster)
    jpeg = representative_face(store, found)
    if jpeg is None:
        message = f"unknown cluster {found.cluster_id} keeps no face image (indexer.unknowns.keep_images)"
        raise ApiError(404, "not_found", message)
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": FACE_CACHE_CONTROL})


@router.post("/unknowns/{cluster}/enrol", response_model=ClusterEnrolmentOut)
def enrol_unknowns(
    cluster: str, body: Annotated[ClusterEnrolIn, Body()], context: Context, key: AdminKey
) -> ClusterEnrolmentOut:
    """Enrol a cluster as a person (`vigil unknowns enroll`); 409 if the name is taken (unless
    `add_to_existing`), the cluster is enrolled already, or its embeddings are of another model."""
    from indexer.erase import StreamKeys
    from indexer.people import person_details
    from indexer.unknown_review import embedder_version, enrol_unknown_cluster

    store = _store(context)
    found = _require_cluster(store, cluster)
    enrolment = enrol_unknown_cluster(
        store,
        embedder_version(context.settings),
        found.cluster_id,
        body.name,
        add_to_existing=body.add_to_existing,
        stream_keys=StreamKeys.from_settings(context.settings),
    )
    record_change(context.client, key.name, "unknowns.enrol", enrolment.identity.identity_id)
    person = person_out(person_details(store.gallery, enrolment.identity.name))
    return ClusterEnrolmentOut(cluster=found.cluster_id, person=person, templates=enrolment.templates)


@router.delete("/unknowns/{cluster}", response_model=ForgottenOut)
def forget_unknowns(cluster: str, context: Context, key: AdminKey) -> ForgottenOut:
    """Forget a cluster: its kept tracks, embeddings and images are deleted (`vigil unknowns forget`)."""
    store = _store(context)
    forgotten = store.forget(_require_cluster(store, cluster).cluster_id)
    record_change(context.client, key.name, "unknowns.forget", str(forgotten.cluster_id))
    return ForgottenOut(cluster=forgotten.cluster_id, tracks=len(forgotten.entries))


@router.post("/feedback", response_model=FeedbackOut)
def feedback(body: Annotated[FeedbackIn, Body()], context: Context, key: AdminKey) -> FeedbackOut:
    """Correct an event (`vigil feedback`): its face is `name` (a new template) or not (a hard negative)."""
    from streamer.feedback import check_event_id, correct_event

    try:
        event_id = check_event_id(body.event_id)
    except VigilError as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None
    identity_id = require_person(context, body.name)
    kept = correct_event(context.client, context.settings, _store(context), event_id, body.verdict, body.name)
    record_change(context.client, key.name, f"feedback.{body.verdict}", identity_id)
    return FeedbackOut(
        feedback_id=kept.feedback_id,
        event_id=kept.event_id,
        verdict=kept.verdict,
        identity_id=kept.identity_id,
        name=kept.name,
        item="template" if kept.verdict == "is" else "negative",
        item_id=kept.item_id,
        created_at=kept.created_at,
    )


@router.get("/people/{name}/history", response_model=HistoryOut)
def history(name: str, context: Context, key: ReadKey) -> HistoryOut:
    """A person's template and negative additions and removals, oldest first (`vigil people history`)."""
    from indexer.gallery import Gallery

    identity_id = require_person(context, name)
    return HistoryOut(items=[_entry_out(entry) for entry in Gallery(context.client).history(identity_id)])


@router.post("/people/{name}/history/{entry}/undo", response_model=HistoryEntryOut)
def undo_history(name: str, entry: int, context: Context, key: AdminKey) -> HistoryEntryOut:
    """Reverse one addition (`vigil people history --undo`); 409 for a removal or one undone already."""
    from indexer.corrections import undo
    from indexer.gallery import Gallery

    identity_id = require_person(context, name)
    gallery = Gallery(context.client)
    entries = len(gallery.history(identity_id))
    if not 1 <= entry <= entries:
        raise ApiError(404, "not_found", f"there is no history entry {entry} (the person has {entries})")
    undone = undo(gallery, identity_id, entry)
    record_change(context.client, key.name, "people.history.undo", identity_id)
    return _entry_out(undone)


def _store(context: ApiContext) -> UnknownStore:
    from indexer.gallery import Gallery
    from indexer.unknowns import UnknownStore

    return UnknownStore(Gallery(context.client), context.settings.indexer.unknowns.retention_s)


def _require_cluster(store: UnknownStore, raw: str) -> UnknownCluster:
    """The cluster numbered ``raw``: 400 when that is no number, 404 when there is no such cluster."""
    from indexer.unknowns import parse_cluster_id

    try:
        cluster_id = parse_cluster_id(raw)
    except VigilError as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None
    cluster = store.find_cluster(cluster_id)
    if cluster is None:
        raise ApiError(404, "not_found", f"no unknown cluster {cluster_id} (forgotten or expired)")
    return cluster


def _cluster_out(summary: ClusterSummary) -> UnknownClusterOut:
    face_url = f"{API_PREFIX}/unknowns/{summary.cluster}/face" if summary.images else None
    return UnknownClusterOut(**summary.to_json(), face_url=face_url)


def _entry_out(entry: HistoryEntry) -> HistoryEntryOut:
    return HistoryEntryOut(
        entry=entry.entry,
        at=entry.at,
        action=entry.action,
        item=entry.item,
        item_id=entry.item_id,
        origin=entry.origin,
        event_id=entry.event_id,
        note=entry.note,
    )
