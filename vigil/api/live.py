"""Live events for the API's subscribers: one reader of the events stream, fanned out.

A subscriber holding its own blocking read would cost a Redis connection and a thread each;
instead one thread follows ``vigil:events`` and hands every event to each subscriber's queue
on its event loop. The stream keeps every event, so a subscriber loses nothing by being cut
off: one too slow to keep up (``QUEUE_LIMIT`` events behind) is, and reconnects with the
``Last-Event-ID`` it last saw to catch up from the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import redis

from streamer.events import Event, follow_events, newest_event_id
from vigil.config.streamer import EventsConfig
from vigil.errors import VigilError
from vigil.stop import pause

logger = logging.getLogger(__name__)

MAX_SUBSCRIBERS = 256
"""Live streams open at once at most (each holds a connection and a queue); more get 503 ``busy``."""
START_TIMEOUT_S = 10.0
"""How long a first subscriber waits for the reader to find its starting point in the stream."""
QUEUE_LIMIT = 1000
"""Events a subscriber may fall behind before it is cut off (it catches up by reconnecting)."""
RETRY_S = 1.0
"""Wait before reading the stream again after Redis failed."""

Item = tuple[str, Event] | None
"""A stream id and its event; None: the subscription ended (cut off, Redis failed, shutdown)."""


@dataclass(eq=False)
class Subscription:
    """One subscriber's queue of (stream id, event), filled on its own event loop."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Item] = field(default_factory=asyncio.Queue)
    ended: bool = False

    def offer(self, item: Item) -> None:
        """Queue ``item`` (on the subscriber's loop); past ``QUEUE_LIMIT``, end the subscription."""
        if self.ended:
            return
        if item is None or self.queue.qsize() >= QUEUE_LIMIT:
            self.ended = True
            item = None
        self.queue.put_nowait(item)


class LiveEvents:
    """Follows the events stream once for every live subscriber of the API.

    Example:
        >>> async with live.subscribe() as subscription:
        ...     stream_id, event = await subscription.queue.get()
    """

    def __init__(self, client: redis.Redis, config: EventsConfig) -> None:
        self._client, self._config = client, config
        self._subscriptions: set[Subscription] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._positioned = threading.Event()  # the reader knows where in the stream it starts
        self._thread: threading.Thread | None = None

    @property
    def subscribers(self) -> int:
        """Subscriptions open now."""
        return len(self._subscriptions)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        """A subscription to events written from now on, until the block is left."""
        subscription = Subscription(asyncio.get_running_loop())
        with self._lock:
            self._subscriptions.add(subscription)
            if self._stop.is_set():
                subscription.offer(None)  # shutting down: the stream ends at once
            elif self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._follow, name="vigil-api-live", daemon=True)
                self._thread.start()
        try:
            # Every event after this point reaches the queue: the reader has pinned its start.
            await asyncio.to_thread(self._positioned.wait, START_TIMEOUT_S)
            yield subscription
        finally:
            with self._lock:
                self._subscriptions.discard(subscription)

    def close(self) -> None:
        """Stop following the stream and end every subscription."""
        self._stop.set()
        self._hand_out(None)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _follow(self) -> None:
        last: str | None = None
        while not self._stop.is_set():
            try:
                last = last or newest_event_id(self._client, self._config)
                self._positioned.set()
                for stream_id, event in follow_events(self._client, self._config, last, stop=self._stop):
                    last = stream_id
                    self._hand_out((stream_id, event))
            except Exception as exc:  # the reader must outlive any one failure
                # Subscribers are told (their stream ends) and reconnect; reading resumes at `last`.
                if isinstance(exc, VigilError):
                    logger.warning("live events: %s; retrying in %.0f s", exc, RETRY_S)
                else:
                    logger.exception("live events: reading the stream failed; retrying in %.0f s", RETRY_S)
                self._hand_out(None)
                pause(self._stop, RETRY_S)

    def _hand_out(self, item: Item) -> None:
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            with contextlib.suppress(RuntimeError):  # its loop has closed: it is leaving anyway
                subscription.loop.call_soon_threadsafe(subscription.offer, item)
