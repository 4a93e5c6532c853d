"""A shim for CompreFace's recognition API, so Double Take and Viseron can use Vigil unchanged.

The paths, parameters and answers are CompreFace's (``/api/v1/recognition/...``, the
``x-api-key`` header, a multipart ``file``); the key is a Vigil API key. Only what those
clients use is here: recognize, add/list/delete a subject's faces, list/rename/delete subjects.

CompreFace's ``similarity`` is a 0-1 score its clients compare with a confidence setting; Vigil
decides with a calibrated rule instead. The shim maps the cosine score onto 0-1 so that the
rule's threshold is 0.5: a face Vigil names scores from 0.5 up to 1, one it calls unknown stays
below 0.5. Set the client's match confidence to 50 % to follow Vigil's decision.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, File, Query, UploadFile
from pydantic import BaseModel, Field

from vigil.api.audit import record_change
from vigil.api.context import API_PREFIX, AdminKey, Context, ReadKey, in_turn, read_upload, require_person
from vigil.api.errors import ERROR_RESPONSES
from vigil.api.routes.people import erase_audited

router = APIRouter(prefix=f"{API_PREFIX}/recognition", responses=ERROR_RESPONSES, tags=["compreface"])

Upload = Annotated[UploadFile, File(description="The photo (CompreFace's `file` field).")]
Subject = Annotated[str, Query(min_length=1, max_length=200, description="The person's name.")]


class Box(BaseModel):
    probability: float
    x_min: int
    y_min: int
    x_max: int
    y_max: int


class SubjectScore(BaseModel):
    subject: str
    similarity: float = Field(description="0-1; 0.5 is Vigil's calibrated threshold (see the module).")


class RecognizedFace(BaseModel):
    box: Box
    subjects: list[SubjectScore]
    execution_time: dict[str, float]


class RecognizeOut(BaseModel):
    result: list[RecognizedFace]


class FaceOut(BaseModel):
    image_id: str = Field(description="The template's id.")
    subject: str


class FacesPage(BaseModel):
    faces: list[FaceOut]
    page_number: int
    page_size: int
    total_pages: int
    total_elements: int


class SubjectRename(BaseModel):
    subject: str = Field(min_length=1, max_length=200)


@router.post("/recognize", response_model=RecognizeOut)
async def recognize(
    file: Upload,
    context: Context,
    key: ReadKey,
    limit: Annotated[int, Query(ge=0, description="Most faces answered; 0: all.")] = 0,
    det_prob_threshold: Annotated[float, Query(ge=0, le=1)] = 0.0,
    prediction_count: Annotated[int, Query(ge=1, le=10)] = 1,
) -> RecognizeOut:
    """Every face with its most likely subjects (CompreFace's `POST /recognition/recognize`)."""
    from indexer.gallery import Gallery

    started = time.perf_counter()
    results = await in_turn(context, context.models.identify, file)
    rule, _ = await asyncio.to_thread(context.models.operating_point)
    names = {identity.identity_id: identity.name for identity in Gallery(context.client).list_identities()}
    elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    faces = [r for r in results if r.face.score >= det_prob_threshold][: limit or None]
    return RecognizeOut(
        result=[
            RecognizedFace(
                box=_box(result.face),
                subjects=_subjects(result.decision, names, rule.threshold, prediction_count),
                execution_time={"detector": elapsed_ms, "calculator": 0.0},
            )
            for result in faces
        ]
    )


@router.post("/faces", status_code=201, response_model=FaceOut)
async def add_face(file: Upload, subject: Subject, context: Context, key: AdminKey) -> FaceOut:
    """Add a photo of `subject`, enrolling them if new (CompreFace's `POST /recognition/faces`)."""
    from indexer.gallery import Gallery

    data = await read_upload(file, context.settings.api.max_upload_bytes)
    existing = Gallery(context.client).find_by_name(subject) is not None
    photo = [(file.filename or "photo.jpg", data)]
    report = await asyncio.to_thread(context.models.enroll, subject, photo, existing)
    if not report.accepted:  # adding to someone enrolled refuses the photo without raising
        from indexer.enroll import NoUsableFaceError

        raise NoUsableFaceError(f"{subject}: no usable face", report.rejected)
    record_change(context.client, key.name, "recognition.faces.add", report.identity.identity_id)
    templates = Gallery(context.client).identity_templates(report.identity.identity_id)
    return FaceOut(image_id=str(max(t.template_id for t in templates)), subject=subject)


@router.get("/faces", response_model=FacesPage)
def list_faces(
    context: Context,
    key: ReadKey,
    page: Annotated[int, Query(ge=0)] = 0,
    size: Annotated[int, Query(ge=1, le=1000)] = 20,
    subject: Annotated[str | None, Query()] = None,
) -> FacesPage:
    """Every template, by subject, a page at a time (CompreFace's `GET /recognition/faces`)."""
    from indexer.gallery import Gallery

    gallery = Gallery(context.client)
    people = [i for i in gallery.list_identities() if subject is None or i.name == subject]
    faces = [
        FaceOut(image_id=str(template.template_id), subject=person.name)
        for person in sorted(people, key=lambda identity: identity.name)
        for template in gallery.identity_templates(person.identity_id)
    ]
    return FacesPage(
        faces=faces[page * size : (page + 1) * size],
        page_number=page,
        page_size=size,
        total_pages=math.ceil(len(faces) / size),
        total_elements=len(faces),
    )


@router.delete("/faces")
def delete_faces(subject: Subject, context: Context, key: AdminKey) -> dict[str, int]:
    """Delete every face of `subject`: Vigil erases the person everywhere (`DELETE /people/{name}`)."""
    erased = erase_audited(context, subject, key.name, "recognition.faces.delete")
    return {"deleted": erased.templates}


@router.get("/subjects")
def subjects(context: Context, key: ReadKey) -> dict[str, list[str]]:
    """Every subject's name (CompreFace's `GET /recognition/subjects`)."""
    from indexer.gallery import Gallery

    return {"subjects": sorted(identity.name for identity in Gallery(context.client).list_identities())}


@router.put("/subjects/{subject}")
def rename_subject(
    subject: str, change: Annotated[SubjectRename, Body()], context: Context, key: AdminKey
) -> dict[str, bool]:
    """Rename a subject (CompreFace's `PUT /recognition/subjects/{subject}`)."""
    from indexer.gallery import Gallery

    identity_id = require_person(context, subject)
    Gallery(context.client).rename(identity_id, change.subject)
    record_change(context.client, key.name, "recognition.subjects.rename", identity_id)
    return {"updated": True}


@router.delete("/subjects/{subject}")
def delete_subject(subject: str, context: Context, key: AdminKey) -> dict[str, str]:
    """Delete a subject: Vigil erases the person everywhere (`DELETE /people/{name}`)."""
    erase_audited(context, subject, key.name, "recognition.subjects.delete")
    return {"subject": subject}


def similarity(score: float, threshold: float) -> float:
    """A cosine score on CompreFace's 0-1 scale, with ``threshold`` at 0.5 (piecewise linear)."""
    if math.isnan(score):
        return 0.0
    if score >= threshold:
        return round(0.5 + 0.5 * (score - threshold) / max(1.0 - threshold, 1e-9), 5)
    return round(0.5 * (score + 1.0) / max(threshold + 1.0, 1e-9), 5)


def _subjects(decision: Any, names: dict[str, str], threshold: float, count: int) -> list[SubjectScore]:
    answer = []
    for match in decision.candidates[:count]:
        value = similarity(match.score, threshold)
        if match.identity_id != decision.identity_id:
            value = min(value, 0.499)  # not Vigil's answer (margin, hard negative): below the line
        if match.identity_id in names:
            answer.append(SubjectScore(subject=names[match.identity_id], similarity=value))
    return answer


def _box(face: Any) -> Box:
    x1, y1, x2, y2 = (round(float(v)) for v in face.box_xyxy)
    return Box(probability=round(float(face.score), 5), x_min=x1, y_min=y1, x_max=x2, y_max=y2)
