"""Live events over Server-Sent Events, from a real server (uvicorn on a local port) and real Redis."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from streamer.bench_setup import temporary_home
from streamer.events import EventPublisher
from streamer.rtsp_clip_server import free_port
from tests.conftest import PEOPLE, SHARED_DATA, require
from tests.streamer.conftest import wait_for
from tests.streamer.test_events import make_event
from tests.test_cli import run_vigil
from vigil.api.keys import ApiRole, KeyStore
from vigil.api.server import BackgroundApi
from vigil.config import Settings

HAMILTON = SHARED_DATA / "clips" / "hamilton.mp4"


class Listener:
    """Reads a live stream in a thread; its (id, event) pairs arrive on ``received``."""

    def __init__(self, url: str, key: str, headers: dict[str, str] | None = None) -> None:
        self.received: queue.Queue[tuple[str, dict[str, object]]] = queue.Queue()
        self.subscribed = threading.Event()
        self._closing = False
        self._client = httpx.Client(timeout=httpx.Timeout(5.0, read=60.0))
        self._thread = threading.Thread(target=self._read, args=(url, {"X-API-Key": key, **(headers or {})}))
        self._thread.start()
        assert self.subscribed.wait(10), "the live stream did not answer"

    def _read(self, url: str, headers: dict[str, str]) -> None:
        try:
            self._follow(url, headers)
        except httpx.HTTPError:
            if not self._closing:  # closing cuts the read short on purpose
                raise

    def _follow(self, url: str, headers: dict[str, str]) -> None:
        with self._client.stream("GET", url, headers=headers) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            stream_id = ""
            for line in response.iter_lines():
                if line.startswith(": subscribed"):
                    self.subscribed.set()
                elif line.startswith("id: "):
                    stream_id = line[4:]
                elif line.startswith("data: "):
                    self.received.put((stream_id, json.loads(line[6:])))

    def next(self, timeout_s: float = 10) -> tuple[str, dict[str, object]]:
        return self.received.get(timeout=timeout_s)

    def ended(self, timeout_s: float) -> bool:
        """Wait for the server to end the stream; whether it did."""
        self._thread.join(timeout=timeout_s)
        return not self._thread.is_alive()

    def close(self) -> None:
        self._closing = True
        self._client.close()  # ends the read
        self._thread.join(timeout=10)


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[BackgroundApi, Settings, str]]:
    """A real API server on a free port over a fresh data directory, and an admin token."""
    with temporary_home(settings) as (home_settings, client):
        token = KeyStore(client).create("watcher", ApiRole.READ)[1]
        with BackgroundApi(home_settings, client, host="127.0.0.1", port=0) as api:
            yield api, home_settings, token


def test_live_events_arrive_as_published_filtered_and_resume_after_the_last_id(
    served: tuple[BackgroundApi, Settings, str],
) -> None:
    api, settings, token = served
    publisher = EventPublisher(api_client(api), settings.streamer.events)
    door = Listener(f"{api.url}/api/v1/events/live?camera=door", token)
    everyone = Listener(f"{api.url}/api/v1/events/live", token)
    try:
        published = [publisher.publish(make_event(camera=cam, frame=n)) for n, cam in enumerate("ab")]
        publisher.publish(make_event(camera="door", frame=7))
        # then everyone sees all three in order; the door listener only the door's
        assert [everyone.next()[0] for _ in range(3)][:2] == published
        door_id, door_event = door.next()
        assert door_event["camera"] == "door" and door_event["frame"] == 7
        assert door.received.empty()
    finally:
        door.close()
        everyone.close()
    # a client that reconnects with Last-Event-ID gets what it missed, then what comes
    resumed = Listener(f"{api.url}/api/v1/events/live", token, {"Last-Event-ID": published[0]})
    try:
        assert resumed.next()[0] == published[1]
        assert resumed.next()[0] == door_id
        later = publisher.publish(make_event(camera="door", frame=9))
        assert resumed.next()[0] == later
    finally:
        resumed.close()


def test_a_bad_last_event_id_or_no_key_is_one_error(served: tuple[BackgroundApi, Settings, str]) -> None:
    api, _, token = served
    refused = httpx.get(f"{api.url}/api/v1/events/live", timeout=5)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    bad = httpx.get(
        f"{api.url}/api/v1/events/live", headers={"X-API-Key": token, "Last-Event-ID": "yesterday"}, timeout=5
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
    # an id whose successor Redis could not hold is refused too, not a traceback mid-stream
    overflow = httpx.get(
        f"{api.url}/api/v1/events/live",
        headers={"X-API-Key": token, "Last-Event-ID": f"1-{2**64 - 1}"},
        timeout=5,
    )
    assert overflow.status_code == 400 and overflow.json()["error"]["code"] == "invalid_request"


def test_a_revoked_keys_live_stream_ends(
    served: tuple[BackgroundApi, Settings, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import vigil.api.routes.events

    api, _, token = served
    monkeypatch.setattr(vigil.api.routes.events, "KEEPALIVE_S", 0.2)  # the key is checked at each
    listener = Listener(f"{api.url}/api/v1/events/live", token)
    try:
        assert not listener.ended(1.0), "a valid key's stream stays open"
        assert KeyStore(api_client(api)).revoke("watcher")
        assert listener.ended(5.0), "the stream of a revoked key stayed open"
    finally:
        listener.close()


@pytest.mark.slow
def test_vigil_run_serves_the_api_and_its_live_stream_delivers_the_runs_events(tmp_path: Path) -> None:
    home = tmp_path / "home"
    clip = require(HAMILTON)
    enrolled = run_vigil("enroll", "Barack Obama", str(require(PEOPLE / "obama.jpg")), home=home)
    assert enrolled.returncode == 0, enrolled.stderr
    created = run_vigil("api-keys", "create", "watcher", home=home)
    token = created.stdout.splitlines()[-1]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(VIGIL_HOME=str(home), VIGIL_API__ENABLED="true", VIGIL_API__PORT=str(port))
    # when the real service runs over the clip with api.enabled, in its own process
    run = subprocess.Popen(
        [sys.executable, "-m", "vigil", "run", str(clip), "--as-fast-as-possible", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/v1"
        assert wait_for(lambda: _answers(f"{url}/health"), 60), "vigil run did not serve the API"
        # a subscriber from the start (since=0) that follows the run live
        listener = Listener(f"{url}/events/live?since=0&identity=Barack%20Obama", token)
        stdout, stderr = run.communicate(timeout=300)
    finally:
        run.kill()
    assert run.returncode == 0, stderr[-3000:]
    assert f"API on http://127.0.0.1:{port}/api/v1" in stderr
    printed = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    expected = [e["event_id"] for e in printed if e["name"] == "Barack Obama"]
    assert expected, "the service recognised Obama on the clip"
    # then the live stream delivered exactly those events, in order, before the service stopped
    assert listener.ended(10), "stopping the service ends the live streams"
    delivered = []
    while not listener.received.empty():
        delivered.append(listener.next()[1]["event_id"])
    listener.close()
    assert delivered == expected


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def api_client(api: BackgroundApi):  # type: ignore[no-untyped-def]
    return api._app.state.vigil.client
