"""The API's one error shape, ``{"error": {"code": ..., "message": ...}}``, and what produces it.

Routes raise ``ApiError`` for what the HTTP layer decides (a missing person, a busy server);
the domain's ``VigilError``s map to a status and code here, keeping their one-line message,
the same the CLI prints.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from vigil.artifacts import ArtifactError
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


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable: `not_found`, `invalid_image`, `unauthorized`, ...")
    message: str = Field(description="What is wrong and what to do, in one line.")


class ErrorBody(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 413, 422, 500, 503)
}
"""Every route's documented error responses (the OpenAPI schema)."""


class ApiError(Exception):
    """An error the route decides: its HTTP status, machine-readable code and one-line message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# VigilError subclasses → HTTP status and code; the message is the error's own one line.
_ERROR_STATUS: list[tuple[type[VigilError], int, str]] = [
    (ImageError, 400, "invalid_image"),
    (CalibrationError, 503, "calibration_unavailable"),
    (EventError, 404, "not_found"),
    (GalleryError, 409, "gallery_conflict"),
    (ArtifactError, 404, "not_found"),
    (ConfigError, 400, "invalid_request"),
    (RedisRefusedError, 503, "redis_refusing_writes"),
    (RedisUnavailableError, 503, "redis_unavailable"),
    (ModelLoadError, 503, "model_unavailable"),
]


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


def add_error_handlers(app: FastAPI) -> None:
    """Answer every error, expected or not, in the one shape."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(VigilError)
    async def vigil_error(request: Request, exc: VigilError) -> JSONResponse:
        from indexer.enroll import NoUsableFaceError

        if isinstance(exc, NoUsableFaceError):
            reasons = "; ".join(f"{r.path.name.split('-', 1)[1]}: {r.reason}" for r in exc.rejected)
            return error_response(422, "no_usable_face", f"no photo held a usable face ({reasons})")
        for kind, status, code in _ERROR_STATUS:
            if isinstance(exc, kind):
                return error_response(status, code, str(exc))
        logger.error("%s %s failed: %s", request.method, request.url.path, exc)
        return error_response(500, "internal", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return error_response(exc.status_code, codes.get(exc.status_code, "invalid_request"), str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, "internal", "an unexpected error; the server's log has the details")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return error_response(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")
