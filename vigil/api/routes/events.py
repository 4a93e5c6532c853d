"""Events: past ones a page at a time (``vigil events``), and live ones as Server-Sent Events."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from vigil.api.context import API_PREFIX, Context, ReadKey
from vigil.api.errors import ERROR_RESPONSES, ApiError
from vigil.errors import VigilError

logger = logging.getLogger(__name__)

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
    from streamer.events import read_events, stream_id_after

    check_since(since)
    items: list[dict[str, Any]] = []
    last: str | None = None
    config = context.settings.streamer.events
    for stream_id, event in read_events(context.client, config, since, camera, identity):
        if len(items) == limit:
            return EventsPage(items=items, next=stream_id_after(last or stream_id))
        items.append(event.model_dump(mode="json"))
        last = stream_id
    return EventsPage(items=items, next=None)


def check_since(since: str) -> str:
    """``since`` as a stream id; 400 for one that is neither 0, an ISO time nor a stream id."""
    from streamer.events import stream_id_since

    try:
        return stream_id_since(since)
    except VigilError as exc:
        raise ApiError(400, "invalid_request", str(exc).replace("--since", "since")) from None


KEEPALIVE_S = 15.0
"""A comment line this often keeps proxies and browsers from closing a quiet stream (and the
key is checked again: a revoked key's stream ends)."""
CATCH_UP_PAGE = 500
"""Past events read (and sent) at a time: a catch-up never holds the whole stream."""


@router.get(
    "/events/live",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events."}},
)
async def live_events(
    request: Request,
    context: Context,
    key: ReadKey,
    camera: str | None = None,
    identity: Identity = None,
    since: Annotated[
        str | None, Query(description="Also the events since then first: 0, an ISO time or a stream id.")
    ] = None,
    last_event_id: Annotated[
        str | None, Header(description="Resume after this event's `id` (browsers send it on reconnecting).")
    ] = None,
) -> StreamingResponse:
    """Events as they happen, as Server-Sent Events: `id` (the stream id), `event: event`, `data` (JSON).

    After a disconnect, reconnect with `Last-Event-ID`: the events written meanwhile come first,
    so none is missed. A subscriber too slow to keep up is disconnected and does the same.
    `since` starts with past events (e.g. `since=0`: everything kept), then follows.
    """
    from streamer.events import stream_id_after
    from vigil.api.live import MAX_SUBSCRIBERS

    # The catch-up starts after Last-Event-ID (a reconnection) or else at `since`.
    start = None
    if last_event_id is not None:
        try:
            start = stream_id_after(check_since(last_event_id))
        except VigilError as exc:
            raise ApiError(400, "invalid_request", f"Last-Event-ID: {exc}") from None
    elif since is not None:
        start = check_since(since)
    if context.live.subscribers >= MAX_SUBSCRIBERS:
        raise ApiError(503, "busy", f"{MAX_SUBSCRIBERS} live streams are open already; retry in a moment")
    token = request.headers.get("x-api-key", "")
    frames = _live_frames(context, token, camera, identity, start)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering either
    return StreamingResponse(frames, media_type="text/event-stream", headers=headers)


async def _live_frames(
    context: Context, token: str, camera: str | None, identity: str | None, start: str | None
) -> AsyncIterator[str]:
    """The stream's lines; it ends (the client reconnects) when Redis fails or the key is revoked."""
    try:
        async for frame in _frames(context, token, camera, identity, start):
            yield frame
    except (VigilError, redis.RedisError) as exc:  # after the 200: the stream ends, no traceback
        logger.warning("a live stream ended: %s", exc)


async def _frames(
    context: Context, token: str, camera: str | None, identity: str | None, start: str | None
) -> AsyncIterator[str]:
    from streamer.events import event_matches, read_events
    from vigil.api.keys import KeyStore

    config = context.settings.streamer.events
    keys = KeyStore(context.client)
    # Events up to `sent` are sent already (or were before the catch-up's start).
    sent = (0, -1) if start is None else _before(_stream_key(start))
    # Subscribed before the catch-up is read, so no event falls between the two.
    async with context.live.subscribe() as subscription:
        if start is not None:
            missed = read_events(context.client, config, start, camera, identity)
            while page := await asyncio.to_thread(lambda: list(itertools.islice(missed, CATCH_UP_PAGE))):
                for stream_id, event in page:
                    yield _frame(stream_id, event)
                    sent = _stream_key(stream_id)
        yield ": subscribed\n\n"  # the headers and a first line now: the client knows it is live
        while True:
            try:
                item = await asyncio.wait_for(subscription.queue.get(), KEEPALIVE_S)
            except TimeoutError:
                if await asyncio.to_thread(keys.check, token) is None:
                    return  # revoked since the stream opened
                yield ": keep-alive\n\n"
                continue
            if item is None:
                return  # cut off: the client reconnects with Last-Event-ID
            stream_id, event = item
            if _stream_key(stream_id) <= sent:
                continue  # sent from the catch-up already
            if event_matches(event, camera, identity):
                yield _frame(stream_id, event)


def _frame(stream_id: str, event: Any) -> str:
    return f"id: {stream_id}\nevent: event\ndata: {event.model_dump_json()}\n\n"


def _before(key: tuple[int, int]) -> tuple[int, int]:
    return key[0], key[1] - 1  # (no id has a negative sequence: this sorts before every id of key[0])


def _stream_key(stream_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = stream_id.partition("-")
    return int(milliseconds), int(sequence or 0)
