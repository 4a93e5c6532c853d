"""What every route shares: the settings, the Redis connection, the face models, and who calls.

``create_app`` puts one ``ApiContext`` on the application; routes take it as a dependency
(``Context``) together with the caller's key (``ReadKey`` for reading, ``AdminKey`` for
changes). The gate (``vigil.api.gate``) has already checked the key; here its role is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

import redis
from fastapi import Depends, Request, UploadFile
from fastapi.security import APIKeyHeader

from vigil.api.errors import ApiError
from vigil.api.faces import SharedModels
from vigil.api.gate import KEY_STATE
from vigil.api.keys import ApiKey, ApiRole
from vigil.api.live import LiveEvents
from vigil.config import Settings

_T = TypeVar("_T")

API_PREFIX = "/api/v1"
IDENTIFY_QUEUE = 8
"""Uploads waiting for the models at most (each holds its decoded image); more get 503 ``busy``."""
MAX_PHOTOS = 20
"""Photos in one enrolment request at most (all of them within ``api.max_upload_bytes``)."""


@dataclass
class ApiContext:
    """The application's shared state: set once by ``create_app``, read by every route."""

    settings: Settings
    client: redis.Redis
    models: SharedModels
    live: LiveEvents


def _context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.vigil
    return context


# Documents the header in the schema; the gate has checked it already.
_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`vigil api-keys create`")


def _read_key(request: Request, header: Annotated[str | None, Depends(_key_header)]) -> ApiKey:
    key: ApiKey = getattr(request.state, KEY_STATE)
    return key


def _admin_key(key: Annotated[ApiKey, Depends(_read_key)]) -> ApiKey:
    if key.role is not ApiRole.ADMIN:
        raise ApiError(403, "forbidden", f"key {key.name!r} may only read; this needs an admin key")
    return key


Context = Annotated[ApiContext, Depends(_context)]
ReadKey = Annotated[ApiKey, Depends(_read_key)]
"""Any valid key: routes that only read."""
AdminKey = Annotated[ApiKey, Depends(_admin_key)]
"""An admin key (403 for a read-only one): routes that change something, each audited."""


async def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    """An uploaded file's bytes, 413 past ``max_bytes``."""
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ApiError(413, "too_large", f"the upload is over {max_bytes:,} bytes (api.max_upload_bytes)")
    return data


async def read_photos(photos: list[UploadFile], max_bytes: int) -> list[tuple[str, bytes]]:
    """Uploaded photos as (file name, bytes), 1 to ``MAX_PHOTOS`` of them."""
    if not 1 <= len(photos) <= MAX_PHOTOS:
        raise ApiError(400, "invalid_request", f"send 1 to {MAX_PHOTOS} photos, not {len(photos)}")
    return [(photo.filename or "photo", await read_upload(photo, max_bytes)) for photo in photos]


async def in_turn(context: ApiContext, work: Callable[[bytes, str], _T], image: UploadFile) -> _T:
    """``work`` on an uploaded image, in the models' thread, unless too many images wait already."""
    data = await read_upload(image, context.settings.api.max_upload_bytes)
    if context.models.waiting >= IDENTIFY_QUEUE:
        raise ApiError(503, "busy", f"{IDENTIFY_QUEUE} images are waiting already; retry in a moment")
    return await asyncio.to_thread(work, data, image.filename or "upload")


def require_person(context: ApiContext, name: str) -> str:
    """The identity id of the person named ``name``; 404 if nobody is enrolled under it."""
    from indexer.gallery import Gallery

    identity = Gallery(context.client).find_by_name(name)
    if identity is None:
        raise ApiError(404, "not_found", f"nobody named {name!r} is enrolled")
    return identity.identity_id
