"""The gallery: list, show, enrol from uploaded photos, add photos, rename, erase."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, File, Form, Query, UploadFile
from pydantic import BaseModel, Field

from vigil.api.audit import record_change
from vigil.api.context import API_PREFIX, AdminKey, ApiContext, Context, ReadKey, read_photos, require_person
from vigil.api.errors import ERROR_RESPONSES

router = APIRouter(prefix=f"{API_PREFIX}/people", responses=ERROR_RESPONSES, tags=["people"])


class PersonOut(BaseModel):
    identity_id: str
    name: str
    created_at: str = Field(description="ISO-8601 UTC.")
    templates: int = Field(description="Templates, every model.")
    templates_per_model: dict[str, int] = Field(
        description="Embedder version → templates (a person is found only by those models)."
    )


class PeoplePage(BaseModel):
    items: list[PersonOut]
    total: int
    offset: int
    limit: int


class TemplateOut(BaseModel):
    template_id: int
    embedder_version: str
    source: str = Field(description="Where it came from (a photo's name, an event), never the image.")
    quality: float
    created_at: str
    origin: str = Field(description="`enrol`, `feedback` or `aging`.")


class PersonDetails(PersonOut):
    template_records: list[TemplateOut]


class RejectedPhoto(BaseModel):
    photo: str = Field(description="The uploaded file's name.")
    reason: str = Field(description="Why it was refused: no face, too small, too blurred, not an image...")


class EnrolmentOut(BaseModel):
    person: PersonOut
    accepted: list[str] = Field(description="Photos that became templates.")
    rejected: list[RejectedPhoto]
    warnings: list[str] = Field(description="Several faces in a photo, look-alikes of someone enrolled.")


class RenameIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="The new name (unique).")


class ErasureOut(BaseModel):
    name: str
    templates: int
    photos: int
    negatives: int
    feedback: int
    clusters: int
    events: int
    thumbnails: int
    results: int
    keys: int
    tracks: int
    rewritten: list[str] = Field(description="Redis files rewritten without the person (`aof`, `rdb`).")


Photos = Annotated[list[UploadFile], File(description="1-20 photos of them, one face each.")]


@router.get("", response_model=PeoplePage)
def people(
    context: Context,
    key: ReadKey,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> PeoplePage:
    """Enrolled people by name, a page at a time, with their templates per model."""
    from indexer.gallery import Gallery
    from indexer.people import list_people

    everyone = list_people(Gallery(context.client))
    page = [person_out(person) for person in everyone[offset : offset + limit]]
    return PeoplePage(items=page, total=len(everyone), offset=offset, limit=limit)


@router.get("/{name}", response_model=PersonDetails)
def person(name: str, context: Context, key: ReadKey) -> PersonDetails:
    """One person and their templates (provenance, not embeddings)."""
    from indexer.gallery import Gallery
    from indexer.people import person_details

    require_person(context, name)
    details = person_details(Gallery(context.client), name)
    return PersonDetails(
        **person_out(details).model_dump(),
        template_records=[
            TemplateOut(
                template_id=t.template_id,
                embedder_version=t.embedder_version,
                source=t.source,
                quality=t.quality,
                created_at=t.created_at,
                origin=t.origin,
            )
            for t in details.template_records
        ],
    )


@router.post("", status_code=201, response_model=EnrolmentOut)
async def create_person(
    name: Annotated[str, Form(min_length=1, max_length=200, description="The person's name (unique).")],
    photos: Photos,
    context: Context,
    key: AdminKey,
) -> EnrolmentOut:
    """Enrol a person from uploaded photos; each refused photo says why (422 if none was usable)."""
    uploads = await read_photos(photos, context.settings.api.max_upload_bytes)
    report = await asyncio.to_thread(context.models.enroll, name, uploads, False)
    record_change(context.client, key.name, "people.create", report.identity.identity_id)
    return _enrolment(context, report)


@router.post("/{name}/photos", response_model=EnrolmentOut)
async def add_photos(name: str, photos: Photos, context: Context, key: AdminKey) -> EnrolmentOut:
    """Add photos to an enrolled person (their templates for the model in force)."""
    require_person(context, name)
    uploads = await read_photos(photos, context.settings.api.max_upload_bytes)
    report = await asyncio.to_thread(context.models.enroll, name, uploads, True)
    record_change(context.client, key.name, "people.add_photos", report.identity.identity_id)
    return _enrolment(context, report)


@router.patch("/{name}", response_model=PersonOut)
def rename_person(
    name: str, change: Annotated[RenameIn, Body()], context: Context, key: AdminKey
) -> PersonOut:
    """Rename a person (409 if the new name is taken)."""
    from indexer.gallery import Gallery
    from indexer.people import person_details

    identity_id = require_person(context, name)
    gallery = Gallery(context.client)
    gallery.rename(identity_id, change.name)
    record_change(context.client, key.name, "people.rename", identity_id)
    return person_out(person_details(gallery, change.name))


@router.delete("/{name}", response_model=ErasureOut)
def delete_person(name: str, context: Context, key: AdminKey) -> ErasureOut:
    """Erase a person from every store, index and stream, and Redis's files (`vigil people delete`)."""
    erased = erase_audited(context, name, key.name, "people.delete")
    return ErasureOut(
        name=erased.name,
        templates=erased.templates,
        photos=erased.photos,
        negatives=erased.negatives,
        feedback=erased.feedback,
        clusters=erased.clusters,
        events=erased.events,
        thumbnails=erased.thumbnails,
        results=erased.results,
        keys=erased.keys,
        tracks=erased.tracks,
        rewritten=list(erased.rewritten),
    )


def erase_audited(context: ApiContext, name: str, who: str, action: str) -> Any:
    """Erase ``name`` everywhere (``indexer.erase``), audited as ``action`` by key ``who``."""
    from indexer.erase import erase_person_named
    from indexer.gallery import Gallery

    require_person(context, name)
    gallery = Gallery(context.client)
    try:
        return erase_person_named(context.settings, name, gallery=gallery)
    finally:  # audited once the person is gone, also when rewriting Redis's files then failed
        if gallery.find_by_name(name) is None:
            # The audit names the key, not the person: the trail must not outlive an erasure.
            record_change(context.client, who, action, "a person (erased)")


def person_out(person: Any) -> PersonOut:
    """A ``indexer.people`` summary on the wire."""
    return PersonOut(
        identity_id=person.identity.identity_id,
        name=person.identity.name,
        created_at=person.identity.created_at,
        templates=person.templates,
        templates_per_model=person.templates_per_model,
    )


def _enrolment(context: ApiContext, report: Any) -> EnrolmentOut:
    from indexer.gallery import Gallery
    from indexer.people import person_details

    def shown(path: Any) -> str:
        return str(path.name).split("-", 1)[1]  # as uploaded, without the spool's number

    return EnrolmentOut(
        person=person_out(person_details(Gallery(context.client), report.identity.name)),
        accepted=[shown(path) for path in report.accepted],
        rejected=[RejectedPhoto(photo=shown(r.path), reason=r.reason) for r in report.rejected],
        warnings=report.warnings,
    )
