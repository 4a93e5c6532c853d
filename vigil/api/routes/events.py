"""Past events, a page at a time (``vigil events``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from vigil.api.context import API_PREFIX, Context, ReadKey
from vigil.api.errors import ERROR_RESPONSES, ApiError
from vigil.errors import VigilError

router = APIRouter(prefix=API_PREFIX, responses=ERROR_RESPONSES, tags=["events"])

Since = Annotated[str, Query(description="0 (everything), an ISO time, or a stream id from `next`.")]
Identity = Annotated[str | None, Query(description="A name or identity id.")]


class EventsPage(BaseModel):
    items: list[dict[str, Any]] = Field(description="Events (see `vigil events --schema`), oldest first.")
    next: str | None = Field(description="Pass as `since` for the next page; null: no more events now.")


@router.get("/events", response_model=EventsPage)
def events(
    context: Context,
    key: ReadKey,
    since: Since = "0",
    camera: str | None = None,
    identity: Identity = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventsPage:
    """Past events, oldest first, a page at a time (`vigil events`)."""
    from streamer.events import read_events

    check_since(since)
    items: list[dict[str, Any]] = []
    last: str | None = None
    config = context.settings.streamer.events
    for stream_id, event in read_events(context.client, config, since, camera, identity):
        if len(items) == limit:
            milliseconds, sequence = (last or stream_id).split("-")
            return EventsPage(items=items, next=f"{milliseconds}-{int(sequence) + 1}")
        items.append(event.model_dump(mode="json"))
        last = stream_id
    return EventsPage(items=items, next=None)


def check_since(since: str) -> None:
    """400 for a ``since`` that is neither 0, an ISO time nor a stream id."""
    from streamer.events import stream_id_since

    try:
        stream_id_since(since)
    except VigilError as exc:
        raise ApiError(400, "invalid_request", str(exc).replace("--since", "since")) from None
