"""The web app: plain HTML, CSS and ES modules in ``static/``, served at ``/`` by the API's server.

There is no build step: the browser loads the files as they are. They are public (the gate
guards only ``/api/v1``); every piece of data comes from the API with the key the user gives,
which the app keeps in the tab's ``sessionStorage``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).resolve().parent / "static"
"""``index.html``, ``style.css`` and ``js/`` (one module per page, ``api.js`` for the API)."""
API_PATHS = "/api/"
"""Paths the web app never answers: the API's own 404 and 405 stand for them."""


class _WebMount(Mount):
    """A mount at ``/`` that leaves ``/api/...`` alone, so a wrong method on a route is still 405."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and scope["path"].startswith(API_PATHS):
            return Match.NONE, {}
        return super().matches(scope)


def mount_web(app: FastAPI) -> None:
    """Serve the web app at ``/``, after every API route."""
    app.router.routes.append(_WebMount("/", app=StaticFiles(directory=STATIC_DIR, html=True), name="web"))
