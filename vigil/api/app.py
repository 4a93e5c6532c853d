"""The API application: ``create_app(settings)`` builds it, ``vigil serve`` runs it under uvicorn.

Every route under ``/api/v1`` but health, readiness and the schema needs an API key
(``X-API-Key``), checked by ``vigil.api.gate`` before any body is read: ``read`` keys read,
``admin`` keys also change, and each change is audited (``vigil.api.audit``). Errors have one
shape (``vigil.api.errors``). Uploads are bounded in bytes (the gate) and pixels, and an image
is decoded (and rejected if it is not one) before any model runs. The routes, one module per
resource, are in ``vigil.api.routes``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import redis
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from vigil import __version__
from vigil.api.context import API_PREFIX, ApiContext
from vigil.api.errors import add_error_handlers
from vigil.api.faces import SharedModels
from vigil.api.gate import MULTIPART_OVERHEAD_BYTES, Gate
from vigil.api.keys import KeyStore
from vigil.api.live import LiveEvents
from vigil.api.routes import compreface, events, gallery, health, images, learning, models, people, thumbnails
from vigil.config import Settings
from vigil.web import mount_web

OPEN_PATHS = frozenset(f"{API_PREFIX}/{path}" for path in ("health", "ready", "openapi.json", "docs"))
"""Served without a key: whether the API and Redis answer, and what the API is."""


def create_app(settings: Settings, client: redis.Redis | None = None) -> FastAPI:
    """The API on ``settings``' Redis (``client`` when given, else a connection of its own).

    The face models load on the first request that needs them, once.
    """
    from vigil.streams import connect_redis

    redis_client = client if client is not None else connect_redis(settings.redis, settings.home)
    context = ApiContext(
        settings,
        redis_client,
        SharedModels(settings, redis_client),
        LiveEvents(redis_client, settings.streamer.events),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        context.live.close()  # live subscribers' streams end, so the server can stop

    app = FastAPI(
        lifespan=lifespan,
        title="Vigil",
        version=__version__,
        description="Streaming face recognition: people, identification, events, service status.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.vigil = context
    app.add_middleware(
        Gate,
        keys=KeyStore(redis_client),
        prefix=API_PREFIX,
        open_paths=OPEN_PATHS,
        max_body_bytes=settings.api.max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
    )
    if settings.api.cors_origins:  # outermost: a browser's preflight carries no key
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.api.cors_origins, allow_methods=["*"], allow_headers=["*"]
        )
    add_error_handlers(app)
    for module in (health, people, images, events, learning, models, gallery, thumbnails, compreface):
        app.include_router(module.router)
    mount_web(app)  # last: the web app at / must not shadow an API route
    return app
