"""The API application: ``create_app(settings)`` builds it, ``vigil serve`` runs it under uvicorn.

Every route under ``/api/v1`` but health, readiness and the schema needs an API key
(``X-API-Key``), checked by ``vigil.api.gate`` before any body is read: ``read`` keys read,
``admin`` keys also change, and each change is audited (``vigil.api.audit``). Errors have one
shape, ``{"error": {"code": ..., "message": ...}}``, with a machine-readable code and the same
one-line message the CLI prints. Uploads are bounded in bytes (the gate) and pixels, and an
image is decoded (and rejected if it is not one) before any model runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import redis
from fastapi import Body, Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from vigil import __version__
from vigil.api.audit import record_change
from vigil.api.faces import SharedModels
from vigil.api.gate import KEY_STATE, MULTIPART_OVERHEAD_BYTES, Gate
from vigil.api.keys import ApiKey, ApiRole, KeyStore
from vigil.config import Settings
from vigil.errors import (
    CalibrationError,
    ConfigError,
    EventError,
    GalleryError,
    ImageError,
    ModelLoadError,
    RedisRefusedError,
    RedisUnavailableError,
    VigilError,
)

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

API_PREFIX = "/api/v1"
OPEN_PATHS = frozenset(f"{API_PREFIX}/{path}" for path in ("health", "ready", "openapi.json", "docs"))
"""Served without a key: whether the API and Redis answer, and what the API is."""
IDENTIFY_QUEUE = 4
"""Uploads waiting for the models at most (each holds its decoded image); more get 503 ``busy``."""
MAX_PHOTOS = 20
"""Photos in one enrolment request at most (all of them within ``api.max_upload_bytes``)."""


# -- the wire: what the routes return (the OpenAPI schema is made from these) -----------------


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable: `not_found`, `invalid_image`, `unauthorized`, ...")
    message: str = Field(description="What is wrong and what to do, in one line.")


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: str = Field(description="`ok` while the API answers; `ready` adds that Redis answers too.")
    version: str


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
    results: int
    keys: int
    tracks: int
    rewritten: list[str] = Field(description="Redis files rewritten without the person (`aof`, `rdb`).")


class FaceOut(BaseModel):
    name: str | None = Field(description="Who, or null: unknown.")
    identity_id: str | None
    score: float | None = Field(description="Cosine similarity to the best person (higher = more alike).")
    box_xyxy: list[float] = Field(description="x1, y1, x2, y2 in the image's pixels.")


class IdentifyOut(BaseModel):
    faces: list[FaceOut] = Field(description="Every face found, best detection first.")


class AnalyzedFace(FaceOut):
    age: float = Field(description="Estimated age in years.")
    age_range: list[int] = Field(description="The estimate's likely range, [low, high] years.")
    gender: str = Field(description="`female` or `male`, as the training data labelled people.")
    gender_confidence: float = Field(description="0.5-1; low for children, whose estimate is unreliable.")


class AnalyzeOut(BaseModel):
    faces: list[AnalyzedFace]


class DetectedFace(BaseModel):
    box_xyxy: list[float]
    score: float = Field(description="Detector probability that this is a face (0-1).")
    landmarks: list[list[float]] = Field(
        description="Eyes, nose tip, mouth corners as [x, y] (left/right as seen in the image)."
    )


class DetectOut(BaseModel):
    faces: list[DetectedFace]


class EventsPage(BaseModel):
    items: list[dict[str, Any]] = Field(description="Events (see `vigil events --schema`), oldest first.")
    next: str | None = Field(description="Pass as `since` for the next page; null: no more events now.")


# -- the application -------------------------------------------------------------------------


def create_app(settings: Settings, client: redis.Redis | None = None) -> FastAPI:
    """The API on ``settings``' Redis (``client`` when given, else a connection of its own).

    The face models load on the first request that needs them, once.
    """
    from vigil.streams import connect_redis

    redis_client = client if client is not None else connect_redis(settings.redis, settings.home)
    keys = KeyStore(redis_client)
    app = FastAPI(
        title="Vigil",
        version=__version__,
        description="Streaming face recognition: people, identification, events, service status.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.add_middleware(
        Gate,
        keys=keys,
        prefix=API_PREFIX,
        open_paths=OPEN_PATHS,
        max_body_bytes=settings.api.max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
    )
    if settings.api.cors_origins:  # outermost: a browser's preflight carries no key
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.api.cors_origins, allow_methods=["*"], allow_headers=["*"]
        )
    _add_error_handlers(app)
    models = SharedModels(settings, redis_client)
    # Documents the header in the schema; the gate has checked it already.
    key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`vigil api-keys create`")

    def authorised(role: ApiRole) -> Callable[..., ApiKey]:
        # (a default, not Annotated: the annotation is a string resolved in the module, not here)
        def check(request: Request, header: str | None = Depends(key_header)) -> ApiKey:
            key: ApiKey = getattr(request.state, KEY_STATE)
            if role is ApiRole.ADMIN and key.role is not ApiRole.ADMIN:
                raise _HttpError(403, "forbidden", f"key {key.name!r} may only read; this needs an admin key")
            return key

        return check

    async def in_turn(work: Callable[[bytes, str], _T], image: UploadFile) -> _T:
        """``work`` on an uploaded image, in the models' thread, unless too many images wait already."""
        data = await _read_upload(image, settings.api.max_upload_bytes)
        if models.waiting >= IDENTIFY_QUEUE:
            raise _HttpError(503, "busy", f"{IDENTIFY_QUEUE} images are waiting already; retry in a moment")
        return await asyncio.to_thread(work, data, image.filename or "upload")

    reader = Depends(authorised(ApiRole.READ))
    admin = Depends(authorised(ApiRole.ADMIN))
    errors: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 413, 422, 500, 503)
    }

    @app.get(f"{API_PREFIX}/health", response_model=Health, tags=["health"])
    def health() -> Health:
        """The API answers (no key needed)."""
        return Health(status="ok", version=__version__)

    @app.get(f"{API_PREFIX}/ready", response_model=Health, responses=errors, tags=["health"])
    def ready() -> Health:
        """The API answers and so does Redis (no key needed): 503 otherwise."""
        from vigil.streams import redis_errors

        with redis_errors():
            redis_client.ping()
        return Health(status="ready", version=__version__)

    @app.get(f"{API_PREFIX}/status", responses=errors, tags=["service"])
    def status(key: ApiKey = reader) -> dict[str, object]:
        """Sources, live workers, bus backlog, gallery version and models, Redis health (`vigil status`)."""
        from streamer.status import service_status

        return service_status(settings, redis_client).to_dict()

    @app.get(f"{API_PREFIX}/people", response_model=PeoplePage, responses=errors, tags=["people"])
    def people(
        key: ApiKey = reader,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> PeoplePage:
        """Enrolled people by name, a page at a time, with their templates per model."""
        from indexer.gallery import Gallery
        from indexer.people import list_people

        everyone = list_people(Gallery(redis_client))
        page = [_person(person) for person in everyone[offset : offset + limit]]
        return PeoplePage(items=page, total=len(everyone), offset=offset, limit=limit)

    @app.get(f"{API_PREFIX}/people/{{name}}", response_model=PersonDetails, responses=errors, tags=["people"])
    def person(name: str, key: ApiKey = reader) -> PersonDetails:
        """One person and their templates (provenance, not embeddings)."""
        from indexer.gallery import Gallery
        from indexer.people import person_details

        gallery = Gallery(redis_client)
        _require_person(gallery, name)
        details = person_details(gallery, name)
        return PersonDetails(
            **_person(details).model_dump(),
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

    @app.post(
        f"{API_PREFIX}/people",
        status_code=201,
        response_model=EnrolmentOut,
        responses=errors,
        tags=["people"],
    )
    async def create_person(
        name: Annotated[str, Form(min_length=1, max_length=200, description="The person's name (unique).")],
        photos: Annotated[list[UploadFile], File(description="1-20 photos of them, one face each.")],
        key: ApiKey = admin,
    ) -> EnrolmentOut:
        """Enrol a person from uploaded photos; each refused photo says why (422 if none was usable)."""
        uploads = await _read_photos(photos, settings.api.max_upload_bytes)
        report = await asyncio.to_thread(models.enroll, name, uploads, False)
        record_change(redis_client, key.name, "people.create", report.identity.identity_id)
        return _enrolment(redis_client, report)

    @app.post(
        f"{API_PREFIX}/people/{{name}}/photos", response_model=EnrolmentOut, responses=errors, tags=["people"]
    )
    async def add_photos(
        name: str,
        photos: Annotated[list[UploadFile], File(description="1-20 more photos of them.")],
        key: ApiKey = admin,
    ) -> EnrolmentOut:
        """Add photos to an enrolled person (their templates for the model in force)."""
        from indexer.gallery import Gallery

        _require_person(Gallery(redis_client), name)
        uploads = await _read_photos(photos, settings.api.max_upload_bytes)
        report = await asyncio.to_thread(models.enroll, name, uploads, True)
        record_change(redis_client, key.name, "people.add_photos", report.identity.identity_id)
        return _enrolment(redis_client, report)

    @app.patch(f"{API_PREFIX}/people/{{name}}", response_model=PersonOut, responses=errors, tags=["people"])
    def rename_person(name: str, change: Annotated[RenameIn, Body()], key: ApiKey = admin) -> PersonOut:
        """Rename a person (409 if the new name is taken)."""
        from indexer.gallery import Gallery
        from indexer.people import person_details

        gallery = Gallery(redis_client)
        _require_person(gallery, name)
        identity_id = gallery.get_by_name(name).identity_id
        gallery.rename(identity_id, change.name)
        record_change(redis_client, key.name, "people.rename", identity_id)
        return _person(person_details(gallery, change.name))

    @app.delete(f"{API_PREFIX}/people/{{name}}", response_model=ErasureOut, responses=errors, tags=["people"])
    def delete_person(name: str, key: ApiKey = admin) -> ErasureOut:
        """Erase a person from every store, index and stream, and Redis's files (`vigil people delete`)."""
        from indexer.erase import erase_person_named
        from indexer.gallery import Gallery

        gallery = Gallery(redis_client)
        _require_person(gallery, name)
        try:
            erased = erase_person_named(settings, name, gallery=gallery)
        finally:  # audited once the person is gone, also when rewriting Redis's files then failed
            if gallery.find_by_name(name) is None:
                # The audit names the key, not the person: the trail must not outlive an erasure.
                record_change(redis_client, key.name, "people.delete", "a person (erased)")
        return ErasureOut(
            name=erased.name,
            templates=erased.templates,
            photos=erased.photos,
            negatives=erased.negatives,
            feedback=erased.feedback,
            clusters=erased.clusters,
            events=erased.events,
            results=erased.results,
            keys=erased.keys,
            tracks=erased.tracks,
            rewritten=list(erased.rewritten),
        )

    @app.post(f"{API_PREFIX}/identify", response_model=IdentifyOut, responses=errors, tags=["faces"])
    async def identify(
        image: Annotated[UploadFile, File(description="A photo (JPEG, PNG, WebP, BMP, TIFF).")],
        key: ApiKey = reader,
    ) -> IdentifyOut:
        """Every face in an uploaded image: its box, and who it is or that it is unknown."""
        results = await in_turn(models.identify, image)
        return IdentifyOut(faces=[FaceOut(**result.to_dict()) for result in results])

    @app.post(f"{API_PREFIX}/analyze", response_model=AnalyzeOut, responses=errors, tags=["faces"])
    async def analyze(
        image: Annotated[UploadFile, File(description="A photo (JPEG, PNG, WebP, BMP, TIFF).")],
        key: ApiKey = reader,
    ) -> AnalyzeOut:
        """Every face with who it is (or unknown) and its estimated age and gender (`vigil analyze`)."""
        analysed = await in_turn(models.analyze, image)
        return AnalyzeOut(
            faces=[AnalyzedFace(**result.to_dict(), **face.to_dict()) for result, face in analysed]
        )

    @app.post(f"{API_PREFIX}/detect", response_model=DetectOut, responses=errors, tags=["faces"])
    async def detect(
        image: Annotated[UploadFile, File(description="A photo (JPEG, PNG, WebP, BMP, TIFF).")],
        key: ApiKey = reader,
    ) -> DetectOut:
        """Every face's box, detection score and landmarks, without identifying anyone."""
        found = await in_turn(models.detect, image)
        return DetectOut(
            faces=[
                DetectedFace(
                    box_xyxy=[round(float(v), 1) for v in face.box_xyxy],
                    score=round(face.score, 4),
                    landmarks=face.landmarks.round(1).tolist(),
                )
                for face in found
            ]
        )

    @app.get(f"{API_PREFIX}/events", response_model=EventsPage, responses=errors, tags=["events"])
    def events(
        key: ApiKey = reader,
        since: Annotated[
            str, Query(description="0 (everything), an ISO time, or a stream id from `next`.")
        ] = "0",
        camera: str | None = None,
        identity: Annotated[str | None, Query(description="A name or identity id.")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> EventsPage:
        """Past events, oldest first, a page at a time (`vigil events`)."""
        from streamer.events import read_events, stream_id_since

        try:
            stream_id_since(since)
        except VigilError as exc:
            raise _HttpError(400, "invalid_request", str(exc).replace("--since", "since")) from None
        items: list[dict[str, Any]] = []
        last: str | None = None
        for stream_id, event in read_events(redis_client, settings.streamer.events, since, camera, identity):
            if len(items) == limit:
                milliseconds, sequence = (last or stream_id).split("-")
                return EventsPage(items=items, next=f"{milliseconds}-{int(sequence) + 1}")
            items.append(event.model_dump(mode="json"))
            last = stream_id
        return EventsPage(items=items, next=None)

    return app


# -- private helpers ---------------------------------------------------------------------------


class _HttpError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


async def _read_photos(photos: list[UploadFile], max_bytes: int) -> list[tuple[str, bytes]]:
    if not 1 <= len(photos) <= MAX_PHOTOS:
        raise _HttpError(400, "invalid_request", f"send 1 to {MAX_PHOTOS} photos, not {len(photos)}")
    return [(photo.filename or "photo", await _read_upload(photo, max_bytes)) for photo in photos]


def _enrolment(client: redis.Redis, report: Any) -> EnrolmentOut:
    from indexer.gallery import Gallery
    from indexer.people import person_details

    def shown(path: Any) -> str:
        return str(path.name).split("-", 1)[1]  # as uploaded, without the spool's number

    return EnrolmentOut(
        person=_person(person_details(Gallery(client), report.identity.name)),
        accepted=[shown(path) for path in report.accepted],
        rejected=[RejectedPhoto(photo=shown(r.path), reason=r.reason) for r in report.rejected],
        warnings=report.warnings,
    )


async def _read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _HttpError(413, "too_large", f"the upload is over {max_bytes:,} bytes (api.max_upload_bytes)")
    return data


def _person(person: Any) -> PersonOut:
    return PersonOut(
        identity_id=person.identity.identity_id,
        name=person.identity.name,
        created_at=person.identity.created_at,
        templates=person.templates,
        templates_per_model=person.templates_per_model,
    )


def _require_person(gallery: Any, name: str) -> None:
    if gallery.find_by_name(name) is None:
        raise _HttpError(404, "not_found", f"nobody named {name!r} is enrolled")


# VigilError subclasses → HTTP status and code; the message is the error's own one line.
_ERROR_STATUS: list[tuple[type[VigilError], int, str]] = [
    (ImageError, 400, "invalid_image"),
    (CalibrationError, 503, "calibration_unavailable"),
    (EventError, 404, "not_found"),
    (GalleryError, 409, "gallery_conflict"),
    (ConfigError, 400, "invalid_request"),
    (RedisRefusedError, 503, "redis_refusing_writes"),
    (RedisUnavailableError, 503, "redis_unavailable"),
    (ModelLoadError, 503, "model_unavailable"),
]


def _add_error_handlers(app: FastAPI) -> None:
    def body(status: int, code: str, message: str) -> JSONResponse:
        return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})

    @app.exception_handler(_HttpError)
    async def http_error(request: Request, exc: _HttpError) -> JSONResponse:
        return body(exc.status, exc.code, exc.message)

    @app.exception_handler(VigilError)
    async def vigil_error(request: Request, exc: VigilError) -> JSONResponse:
        from indexer.enroll import NoUsableFaceError

        if isinstance(exc, NoUsableFaceError):
            reasons = "; ".join(f"{r.path.name.split('-', 1)[1]}: {r.reason}" for r in exc.rejected)
            return body(422, "no_usable_face", f"no photo held a usable face ({reasons})")
        for kind, status, code in _ERROR_STATUS:
            if isinstance(exc, kind):
                return body(status, code, str(exc))
        logger.error("%s %s failed: %s", request.method, request.url.path, exc)
        return body(500, "internal", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return body(exc.status_code, codes.get(exc.status_code, "invalid_request"), str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("%s %s failed", request.method, request.url.path)
        return body(500, "internal", "an unexpected error; the server's log has the details")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return body(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")
