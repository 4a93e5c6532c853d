"""The face behind an event, as a small JPEG, when the user opted in (``streamer.events.thumbnails``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from vigil.api.context import API_PREFIX, Context, ReadKey
from vigil.api.errors import ERROR_RESPONSES, ApiError
from vigil.errors import EventError

router = APIRouter(prefix=API_PREFIX, responses=ERROR_RESPONSES, tags=["events"])

CACHE_CONTROL = "private, no-store"
"""A thumbnail never changes, but erasure deletes it: browsers may keep it an hour, shared caches not."""

EventId = Annotated[str, Path(description="The event's `event_id` (32 hex digits).")]


@router.get(
    "/events/{event_id}/thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "The face, at most 128 px a side."}},
)
def thumbnail(event_id: EventId, context: Context, key: ReadKey) -> Response:
    """The JPEG of the face behind an event; 404 unless `streamer.events.thumbnails` kept one."""
    from streamer.thumbnails import event_thumbnail

    try:
        jpeg = event_thumbnail(context.client, context.settings, event_id)
    except EventError as exc:  # a malformed id: the caller's mistake, not a missing thing
        raise ApiError(400, "invalid_request", str(exc)) from None
    if jpeg is None:
        raise ApiError(
            404,
            "not_found",
            f"no thumbnail of event {event_id}: thumbnails are opt-in (streamer.events.thumbnails) "
            "and expire with their events (streamer.events.max_age_s)",
        )
    return Response(content=jpeg, media_type="image/jpeg", headers={"Cache-Control": CACHE_CONTROL})
