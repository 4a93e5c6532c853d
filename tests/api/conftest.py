"""What the API's tests share: an app on a fresh data directory with its embedded Redis, keys.

``api`` gives each test its own data directory (``temporary_home``), so keys, people, events
and the audit trail start empty; ``enrolled`` adds Obama and Biden from one photo each.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from indexer.enroll import enroll_person
from indexer.gallery import Gallery
from indexer.identify import Identifier
from streamer.bench_setup import temporary_home
from tests.conftest import PEOPLE, require
from vigil.api.app import create_app
from vigil.api.keys import ApiRole, KeyStore
from vigil.config import Settings
from vigil.models.pipeline import FacePipeline

OBAMA = "Barack Obama"
BIDEN = "Joe Biden"


class Api:
    """A TestClient on the app, with a read key and an admin key."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.settings, self.redis = settings, client
        self.http = TestClient(create_app(settings, client))
        keys = KeyStore(client)
        self.read_key = {"X-API-Key": keys.create("dashboard", ApiRole.READ)[1]}
        self.admin_key = {"X-API-Key": keys.create("operator", ApiRole.ADMIN)[1]}


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    with temporary_home(settings) as (home_settings, client):
        yield Api(home_settings, client)


@pytest.fixture
def enrolled(api: Api, pipeline: FacePipeline) -> Api:
    """Obama and Biden enrolled, one photo each."""
    identifier = Identifier.from_settings(Gallery(api.redis), pipeline, api.settings)
    for name, photo in ((OBAMA, "obama.jpg"), (BIDEN, "biden.jpg")):
        enroll_person(identifier, api.settings.indexer, name, [require(PEOPLE / photo)])
    return api


def error_of(response: Any) -> tuple[int, str]:
    """The status and the machine-readable code of an error response (the one error shape)."""
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"], "every error says what is wrong"
    return response.status_code, body["error"]["code"]
