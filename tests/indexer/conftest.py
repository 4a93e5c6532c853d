"""The gallery fixture, on the real Redis servers of ``tests/conftest.py`` (``backend``).

``RedisBackend`` and the embedded-server helpers live in ``tests/conftest.py`` (the streamer
tests use them too); they are re-exported here for the gallery tests.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from indexer.gallery import Gallery
from tests.conftest import DEFAULT_SERVER_URL as DEFAULT_SERVER_URL
from tests.conftest import RedisBackend as RedisBackend
from tests.conftest import is_alive as is_alive
from tests.conftest import stop_embedded as stop_embedded

Reconnect = Callable[[], Gallery]


@pytest.fixture
def gallery(backend: RedisBackend) -> Gallery:
    return backend.gallery()
