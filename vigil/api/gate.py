"""The API's gate: the key is checked, and the body bounded, before any byte of an upload is read.

FastAPI parses a multipart body before a route's dependencies run, so a key checked there
would come after a stranger's upload had been received and spooled. This ASGI middleware
sits in front instead: a request to ``/api/v1`` without a valid key is answered 401 at once,
one that announces a body over the limit 413, and a body that grows past it while it streams
in is cut off with 413. The key found is left in the request's state for the route to check
its role.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from vigil.api.keys import KeyStore
from vigil.errors import RedisUnavailableError

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

MULTIPART_OVERHEAD_BYTES = 64 * 1024
"""Room for a multipart body's boundaries and part headers on top of the image itself."""
KEY_STATE = "api_key"


class Gate:
    """ASGI middleware: keys and body size for every path under ``prefix`` but ``open_paths``.

    Args:
        app: The application behind it.
        keys: Where keys are checked.
        prefix: The API's path prefix (``/api/v1``).
        open_paths: Paths served without a key (health, readiness, the schema).
        max_body_bytes: Largest request body accepted.
    """

    def __init__(
        self, app: App, keys: KeyStore, prefix: str, open_paths: frozenset[str], max_body_bytes: int
    ) -> None:
        self.app, self.keys, self.prefix = app, keys, prefix
        self.open_paths, self.max_body_bytes = open_paths, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(self.prefix) or path in self.open_paths:
            await self.app(scope, receive, send)
            return
        headers = {name.lower(): value for name, value in scope.get("headers", [])}
        token = headers.get(b"x-api-key", b"").decode("latin-1")
        try:
            key = await asyncio.to_thread(self.keys.check, token) if token else None
        except RedisUnavailableError:
            logger.exception("cannot check an API key")
            await _error(
                send, 503, "redis_unavailable", "Redis cannot be reached to check the key; retry later"
            )
            return
        if key is None:
            logger.info("refused a request to %s without a valid key", path)
            message = "a valid X-API-Key header is needed; see `vigil api-keys create`"
            await _error(send, 401, "unauthorized", message)
            return
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await _error(send, 413, "too_large", self._too_large())
            return
        scope.setdefault("state", {})[KEY_STATE] = key
        started = answered = False
        received = 0

        async def counted_receive() -> Message:
            # Past the limit the gate answers 413 itself and tells the app the client has gone.
            nonlocal received, answered
            if answered:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes and not started:
                    await _error(send, 413, "too_large", self._too_large())
                    answered = True
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the gate has answered already
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except Exception:
            if not answered:
                raise

    def _too_large(self) -> str:
        limit = self.max_body_bytes - MULTIPART_OVERHEAD_BYTES
        return f"the upload is over {limit:,} bytes (api.max_upload_bytes)"


async def _error(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
