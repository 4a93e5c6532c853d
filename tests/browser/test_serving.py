"""How the web app is served (no browser needed): public static files at ``/`` that never stand in
for the API, and every one of them shipped in the wheel."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath

import pytest
from fastapi.testclient import TestClient

from streamer.bench_setup import temporary_home
from vigil.api.app import create_app
from vigil.api.keys import ApiRole, KeyStore
from vigil.config import Settings
from vigil.web import STATIC_DIR

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def http(settings: Settings) -> Iterator[TestClient]:
    """The app on a fresh Redis; a read key in ``http.headers`` unless a test drops it."""
    with temporary_home(settings) as (home_settings, client):
        key = KeyStore(client).create("viewer", ApiRole.READ)[1]
        yield TestClient(create_app(home_settings, client), headers={"X-API-Key": key})


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/", "text/html"),  # the app's page, without a key: it asks for one itself
        ("/js/api.js", "text/javascript"),  # modules load as scripts
        ("/style.css", "text/css"),
    ],
)
def test_the_app_is_public(http: TestClient, path: str, media_type: str) -> None:
    response = http.get(path, headers={"X-API-Key": ""})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(media_type)


@pytest.mark.parametrize(
    ("method", "path", "key", "expected"),
    [
        ("get", "/api/v1/people", False, (401, "unauthorized")),  # the gate still guards the API
        ("get", "/api/v1/identify", True, (405, "method_not_allowed")),  # not swallowed by the web app
        ("get", "/api/v1/index.html", True, (404, "not_found")),  # no static file under the API's prefix
        ("get", "/no-such-page.html", False, (404, "not_found")),  # a missing file: the API's error shape
    ],
)
def test_the_app_never_answers_for_the_api(
    http: TestClient, method: str, path: str, key: bool, expected: tuple[int, str]
) -> None:
    headers = {} if key else {"X-API-Key": ""}
    response = getattr(http, method)(path, headers=headers)
    assert (response.status_code, response.json()["error"]["code"]) == expected, response.text


def test_every_static_file_ships_in_the_wheel() -> None:
    # given the package data globs of pyproject.toml
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = config["tool"]["setuptools"]["package-data"]["vigil"]
    # then each file of the web app matches one (relative to the vigil package)
    files = [path.relative_to(ROOT / "vigil").as_posix() for path in STATIC_DIR.rglob("*") if path.is_file()]
    assert len(files) >= 8, files
    missing = [name for name in files if not any(_packaged(name, glob) for glob in globs)]
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"


def _packaged(name: str, glob: str) -> bool:
    """Whether setuptools' ``glob`` takes ``name``: its ``*`` stays within one folder."""
    return PurePosixPath(name).parent == PurePosixPath(glob).parent and fnmatch(name, glob)
