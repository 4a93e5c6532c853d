"""Health and readiness (no key needed) and the service's status."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from vigil import __version__
from vigil.api.context import API_PREFIX, Context, ReadKey
from vigil.api.errors import ERROR_RESPONSES

router = APIRouter(prefix=API_PREFIX, responses=ERROR_RESPONSES)


class Health(BaseModel):
    status: str = Field(description="`ok` while the API answers; `ready` adds that Redis answers too.")
    version: str


@router.get("/health", response_model=Health, tags=["health"])
def health() -> Health:
    """The API answers (no key needed)."""
    return Health(status="ok", version=__version__)


@router.get("/ready", response_model=Health, tags=["health"])
def ready(context: Context) -> Health:
    """The API answers and so does Redis (no key needed): 503 otherwise."""
    from vigil.streams import redis_errors

    with redis_errors():
        context.client.ping()
    return Health(status="ready", version=__version__)


@router.get("/status", tags=["service"])
def status(context: Context, key: ReadKey) -> dict[str, object]:
    """Sources, live workers, bus backlog, gallery version and models, Redis health (`vigil status`)."""
    from streamer.status import service_status

    return service_status(context.settings, context.client).to_dict()
