"""Health and readiness (no key needed), the service's status and its cameras."""

from __future__ import annotations

from typing import Any

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


class CameraOut(BaseModel):
    name: str
    state: str = Field(description="`connecting`, `live`, `backing-off`, `failed` or `finished`.")
    reason: str = Field(description="Why it is not live (the last error), or empty.")
    frames: int = Field(description="Frames read in this run.")
    fps: float | None = Field(description="Frames read per second lately; null before the second frame.")
    since: float | None = Field(description="When it entered this state (Unix seconds).")
    last_frame_at: float | None = Field(description="When it last read a frame (Unix seconds).")


class CamerasOut(BaseModel):
    items: list[CameraOut] = Field(description="Every camera that reported to this Redis, by name.")
    bus_waiting: int = Field(description="Frames on the bus no worker has taken yet (every camera).")
    bus_pending: int = Field(description="Frames taken by a worker, not yet done.")
    workers: int = Field(description="Live workers.")


@router.get("/cameras", response_model=CamerasOut, tags=["service"])
def cameras(context: Context, key: ReadKey) -> CamerasOut:
    """Each camera's state, frame rate and last error, with the frame backlog (`vigil status`)."""
    from streamer.status import service_status

    status = service_status(context.settings, context.client)
    return CamerasOut(
        items=[_camera(name, report) for name, report in sorted(status.sources.items())],
        bus_waiting=status.bus_waiting,
        bus_pending=status.bus_pending,
        workers=len(status.workers),
    )


def _camera(name: str, report: dict[str, Any]) -> CameraOut:
    return CameraOut(
        name=name,
        state=str(report.get("state", "unknown")),
        reason=str(report.get("reason", "")),
        frames=int(report.get("frames", 0)),
        fps=report.get("fps"),
        since=report.get("since"),
        last_frame_at=report.get("last_frame_at"),
    )
