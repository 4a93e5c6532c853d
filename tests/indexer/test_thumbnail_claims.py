"""Event thumbnails reach erasure: those the user said are a person's, and those written mid-erasure;
so do face chips waiting for the tracker and events waiting in webhook queues."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

import indexer.erase
from indexer.enroll import enroll_person
from indexer.erase import StreamKeys, claim_thumbnails, erase_person_named
from indexer.gallery import Gallery
from indexer.identify import Identifier
from streamer.analysis import chips_key_for
from streamer.bench_setup import temporary_home
from tests.conftest import PEOPLE, require
from vigil.config import Settings
from vigil.models.pipeline import FacePipeline

OBAMA = "Barack Obama"
DAY_MS = 86_400_000


@pytest.fixture
def home(settings: Settings, pipeline: FacePipeline) -> Iterator[tuple[Settings, redis.Redis, str]]:
    """A fresh data directory with Obama enrolled; his identity id."""
    with temporary_home(settings) as (home_settings, client):
        identifier = Identifier.from_settings(Gallery(client), pipeline, home_settings)
        report = enroll_person(identifier, home_settings.indexer, OBAMA, [require(PEOPLE / "obama.jpg")])
        yield home_settings, client, report.identity.identity_id


def test_claimed_thumbnails_are_linked_to_the_person_and_erased_with_them(
    home: tuple[Settings, redis.Redis, str],
) -> None:
    settings, client, obama = home
    keys = StreamKeys.from_settings(settings)
    # given two events' thumbnails of an unknown track (no one's), one expiring later
    client.set(keys.thumbnail("a" * 32), b"jpeg-a", px=DAY_MS)
    client.set(keys.thumbnail("b" * 32), b"jpeg-b", px=2 * DAY_MS)
    # when the user says they show Obama (feedback, an enrolled cluster); one event kept none
    linked = claim_thumbnails(client, keys, obama, ["a" * 32, "b" * 32, "c" * 32])
    # then the two kept are linked to him, and the link lives as long as the longer-lived one
    assert linked == 2
    assert client.smembers(keys.thumbnails_of(obama)) == {
        keys.thumbnail("a" * 32).encode(),
        keys.thumbnail("b" * 32).encode(),
    }
    assert DAY_MS < client.pttl(keys.thumbnails_of(obama)) <= 2 * DAY_MS
    # and erasing him deletes both
    erased = erase_person_named(settings, OBAMA, gallery=Gallery(client), rewrite_files=False)
    assert erased.thumbnails == 2
    assert not client.exists(keys.thumbnail("a" * 32), keys.thumbnail("b" * 32))


def test_a_thumbnail_written_while_the_erasure_runs_is_swept_too(
    home: tuple[Settings, redis.Redis, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, client, obama = home
    keys = StreamKeys.from_settings(settings)
    client.set(keys.thumbnail("a" * 32), b"jpeg-a", px=DAY_MS)
    client.sadd(keys.thumbnails_of(obama), keys.thumbnail("a" * 32))
    plan = indexer.erase._plan

    def plan_then_a_tracker_commits(*args: object) -> object:
        planned = plan(*args)  # type: ignore[arg-type]
        # a tracker names Obama's track after the plan was read, before the version bump
        client.set(keys.thumbnail("d" * 32), b"jpeg-d", px=DAY_MS)
        client.sadd(keys.thumbnails_of(obama), keys.thumbnail("d" * 32))
        return planned

    monkeypatch.setattr(indexer.erase, "_plan", plan_then_a_tracker_commits)
    erase_person_named(settings, OBAMA, gallery=Gallery(client), rewrite_files=False)
    assert not client.exists(keys.thumbnail("a" * 32)), "the thumbnail the plan read outlived him"
    assert not client.exists(keys.thumbnail("d" * 32)), "the thumbnail written mid-erasure outlived him"
    assert not client.exists(keys.thumbnails_of(obama))


def test_erasure_deletes_waiting_chips_and_the_persons_queued_webhook_events(
    home: tuple[Settings, redis.Redis, str],
) -> None:
    settings, client, obama = home
    keys = StreamKeys.from_settings(settings)
    # given face chips waiting for the tracker (they name nobody) and two webhook endpoints'
    # queued event bodies, one about Obama and one about a stranger
    chips = chips_key_for(settings.streamer.bus.faces_stream)
    client.hset(chips, mapping={"0": b"jpeg"})
    alerts = keys.webhook_bodies_pattern.replace("*", "alerts")
    log = keys.webhook_bodies_pattern.replace("*", "log")
    client.hset(
        alerts, mapping={"e1": f'{{"identity_id": "{obama}", "name": "{OBAMA}"}}', "e2": '{"name": null}'}
    )
    client.hset(log, mapping={"e1": f'{{"identity_id": "{obama}", "name": "{OBAMA}"}}'})
    # when he is erased
    erase_person_named(settings, OBAMA, gallery=Gallery(client), rewrite_files=False)
    # then every waiting chip is gone, and his queued events, not the stranger's
    assert not client.exists(chips)
    assert client.hkeys(alerts) == [b"e2"] and not client.exists(log)
