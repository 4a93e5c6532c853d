"""The gallery as one file: export it (a backup) and import one (``vigil gallery export|import``).

An export holds every person's embeddings and metadata, never photos: biometric data, so
both directions need an admin key, and both are audited.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel

from vigil.api.audit import record_change
from vigil.api.context import API_PREFIX, AdminKey, Context, read_upload
from vigil.api.errors import ERROR_RESPONSES

router = APIRouter(prefix=f"{API_PREFIX}/gallery", responses=ERROR_RESPONSES, tags=["gallery"])

EXPORT_NAME = "vigil-gallery.jsonl"


class BackupOut(BaseModel):
    people: int
    templates: int
    negatives: int
    feedback: int
    history_entries: int


@router.get(
    "/export",
    response_class=Response,
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "The export file."}},
)
async def export(context: Context, key: AdminKey) -> Response:
    """Every person with templates, negatives, feedback and history, as `vigil gallery export` writes."""
    from indexer.backup import export_gallery
    from indexer.gallery import Gallery

    with tempfile.TemporaryDirectory(prefix="vigil-export-") as folder:
        path = Path(folder) / EXPORT_NAME
        summary = await asyncio.to_thread(export_gallery, Gallery(context.client), path)
        body = path.read_bytes()
    record_change(context.client, key.name, "gallery.export", f"{summary.people} people")
    headers = {"Content-Disposition": f'attachment; filename="{EXPORT_NAME}"', "Cache-Control": "no-store"}
    return Response(body, media_type="application/x-ndjson", headers=headers)


@router.post("/import", response_model=BackupOut)
async def import_(
    file: Annotated[
        UploadFile, File(description="A file from `vigil gallery export` or GET /gallery/export.")
    ],
    context: Context,
    key: AdminKey,
) -> BackupOut:
    """Add the people of an export file, all or nothing (409 if someone in it is enrolled already)."""
    from indexer.backup import import_gallery
    from indexer.gallery import Gallery
    from vigil.errors import GalleryError

    # Bounded like every upload (api.max_upload_bytes); `vigil gallery import` takes any size.
    data = await read_upload(file, context.settings.api.max_upload_bytes)
    name = Path(file.filename or EXPORT_NAME).name or EXPORT_NAME  # for messages only
    with tempfile.TemporaryDirectory(prefix="vigil-import-") as folder:
        path = Path(folder) / EXPORT_NAME
        path.write_bytes(data)
        try:
            summary = await asyncio.to_thread(import_gallery, Gallery(context.client), path)
        except GalleryError as exc:  # its message names the file: the upload's name, not our spool
            raise GalleryError(str(exc).replace(str(path), name)) from None
    record_change(context.client, key.name, "gallery.import", f"{summary.people} people")
    return BackupOut(
        people=summary.people,
        templates=summary.templates,
        negatives=summary.negatives,
        feedback=summary.feedback,
        history_entries=summary.history_entries,
    )
