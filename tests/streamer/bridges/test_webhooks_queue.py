"""The webhooks bridge's durable queue (on real Redis servers: embedded and REDIS_URL's) and HTTP verdicts.

The queue's promises: an event queued twice is queued once, the oldest goes first when it is full,
a taken event is hidden for its lease only, an erased person's queued events are never sent, and
too-old events go. The verdicts: which answers are retried, which are final, and Retry-After.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import cast

import pytest
import redis

from indexer.deletions import purge_hash
from streamer.bridges.webhook_delivery import (
    MAX_RETRY_AFTER_S,
    Verdict,
    retry_after_s,
    sign,
    verdict_of,
    verify_signature,
)
from streamer.bridges.webhook_queue import QueuedEvent, WebhookQueue, WebhookQueueKeys
from tests.conftest import RedisBackend
from tests.streamer.bridges.test_webhooks import SECRET, verify
from tests.streamer.test_events import make_event

DOCS = Path(__file__).resolve().parents[3] / "docs" / "bridges.md"
NOW_S = 1_800_000_000.0
REMEMBER_S = 3600.0


@pytest.fixture
def client(backend: RedisBackend) -> redis.Redis:
    return backend.client()


@pytest.fixture
def queue(client: redis.Redis, backend: RedisBackend) -> Iterator[WebhookQueue]:
    """A queue of 3 in the test's namespace (deleted at teardown)."""
    yield WebhookQueue(
        client, WebhookQueueKeys.for_endpoint(f"{backend.namespace}:events", "hook"), 3, REMEMBER_S
    )


def queued(event_id: str, born_s: float = NOW_S, body: str = "{}") -> QueuedEvent:
    return QueuedEvent(event_id, body, born_s)


def take_all(queue: WebhookQueue, now_s: float) -> list[str]:
    """The ids ``claim`` hands out at ``now_s``, in order, until none is due."""
    taken = []
    while (claim := queue.claim(now_s, lease_s=60.0)).event is not None:
        taken.append(claim.event.event_id)
    return taken


def test_events_are_taken_in_the_order_queued(queue: WebhookQueue) -> None:
    # given: ids that sort otherwise than the order they came in
    ids = ["c", "a", "b"]
    # when
    result = queue.enqueue([queued(event_id) for event_id in ids], NOW_S)
    # then
    assert (result.added, result.repeated, result.dropped) == (3, 0, [])
    assert take_all(queue, NOW_S) == ids


def test_an_event_queued_again_is_left_out(queue: WebhookQueue) -> None:
    # given: an event queued, then delivered (out of the queue)
    queue.enqueue([queued("a")], NOW_S)
    queue.remove("a")
    # when: the bridge reads it again (it died before acknowledging the stream entry)
    result = queue.enqueue([queued("a"), queued("b")], NOW_S + 1)
    # then: only the new one is queued
    assert (result.added, result.repeated) == (1, 1)
    assert take_all(queue, NOW_S + 1) == ["b"]


def test_an_id_is_forgotten_after_max_age(queue: WebhookQueue, client: redis.Redis) -> None:
    # given: an event queued and delivered longer ago than the bridge remembers
    queue.enqueue([queued("a")], NOW_S)
    queue.remove("a")
    # when: an id is queued past that (the stream's own age limit drops such an old event first)
    queue.enqueue([queued("b")], NOW_S + REMEMBER_S + 1)
    # then: the memory of ids stays bounded
    assert client.zrange(queue.keys.seen, 0, -1) == [b"b"]


def test_a_full_queue_drops_its_oldest_events(queue: WebhookQueue) -> None:
    # given: a queue of 3 holding 3 events captured at different times
    queue.enqueue([queued("mid", NOW_S - 5), queued("new", NOW_S - 1), queued("old", NOW_S - 9)], NOW_S)
    # when: two more come
    result = queue.enqueue([queued("newer", NOW_S), queued("oldest", NOW_S - 20)], NOW_S)
    # then: the oldest by capture time go, whatever the order they came in
    assert sorted(result.dropped) == ["old", "oldest"]
    assert queue.size() == 3
    assert sorted(take_all(queue, NOW_S)) == ["mid", "new", "newer"]


def test_a_taken_event_is_hidden_for_its_lease_only(queue: WebhookQueue) -> None:
    # given
    queue.enqueue([queued("a", body='{"x":1}')], NOW_S)
    # when: a bridge takes it and dies without a word
    claim = queue.claim(NOW_S, lease_s=30.0)
    # then: it is nobody else's until the lease ends, then it is due again, attempts unchanged
    assert claim.event == QueuedEvent("a", '{"x":1}', NOW_S, 0)
    later = queue.claim(NOW_S + 29.0, lease_s=30.0)
    assert later.event is None and later.next_due_s == pytest.approx(NOW_S + 30.0)
    again = queue.claim(NOW_S + 30.0, lease_s=30.0).event
    assert again is not None and again.event_id == "a"


def test_a_rescheduled_event_comes_back_with_its_attempts(queue: WebhookQueue) -> None:
    queue.enqueue([queued("a")], NOW_S)
    queue.claim(NOW_S, lease_s=30.0)
    # when: the attempt failed; another in 2 s
    assert queue.reschedule("a", NOW_S + 2.0, attempts=1)
    # then
    assert queue.claim(NOW_S + 1.0, lease_s=30.0).event is None
    event = queue.claim(NOW_S + 2.0, lease_s=30.0).event
    assert event is not None and event.attempts == 1


def test_an_event_dropped_meanwhile_is_not_brought_back(queue: WebhookQueue, client: redis.Redis) -> None:
    # given: an event in flight that the full queue dropped meanwhile
    queue.enqueue([queued("a", NOW_S - 10)], NOW_S)
    queue.claim(NOW_S, lease_s=30.0)
    queue.enqueue([queued(name) for name in "bcd"], NOW_S)
    # when: its attempt fails
    # then: it stays dropped
    assert not queue.reschedule("a", NOW_S + 1, attempts=1)
    assert client.hget(queue.keys.attempts, "a") is None
    assert queue.size() == 3


def test_events_of_an_erased_person_are_never_sent(queue: WebhookQueue, client: redis.Redis) -> None:
    # given: events about Ada and about someone unknown waiting in the queue
    ada, unknown = make_event(), make_event(identity_id=None, name=None, score=None, frame=1)
    queue.enqueue(
        [queued(ada.event_id, body=ada.to_json()), queued(unknown.event_id, body=unknown.to_json())], NOW_S
    )
    # when: erasure purges the queue's bodies as it purges the tracker's hashes (her id)
    assert purge_hash(client, queue.keys.bodies, ["id-ada"]) == 1
    # then: only the unknown face's event is handed out, and Ada's leaves no trace
    assert take_all(queue, NOW_S) == [unknown.event_id]
    assert client.zscore(queue.keys.due, ada.event_id) is None
    assert client.zscore(queue.keys.born, ada.event_id) is None


def test_too_old_events_expire(queue: WebhookQueue) -> None:
    queue.enqueue([queued("old", NOW_S - 100), queued("fresh", NOW_S)], NOW_S)
    assert queue.expire(NOW_S - 50) == 1
    assert take_all(queue, NOW_S) == ["fresh"]
    assert queue.expire(NOW_S - 50) == 0


# --- what an answer means -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, Verdict.DELIVERED),  # OK
        (204, Verdict.DELIVERED),  # no content: still taken
        (301, Verdict.REFUSED),  # redirects are not followed: a misconfigured URL
        (400, Verdict.REFUSED),  # the receiver cannot take this body: retrying cannot help
        (401, Verdict.REFUSED),  # wrong credentials in the URL, or a signature it refuses
        (404, Verdict.REFUSED),  # no such hook
        (408, Verdict.RETRY),  # request timeout: try again
        (429, Verdict.RETRY),  # too many requests: try again later (Retry-After)
        (500, Verdict.RETRY),  # its bug or its outage: try again
        (503, Verdict.RETRY),  # unavailable: try again
    ],
)
def test_verdicts(status: int, expected: Verdict) -> None:
    assert verdict_of(status) is expected


@pytest.mark.parametrize(
    ("header", "expected_s"),
    [
        (None, None),  # none given
        ("", None),  # empty
        ("7", 7.0),  # seconds
        ("soon", None),  # unreadable: the back-off decides
        ("99999999", MAX_RETRY_AFTER_S),  # capped: an event would expire long before
        (format_datetime(datetime.fromtimestamp(NOW_S + 30, UTC), usegmt=True), 30.0),  # an HTTP date
        (format_datetime(datetime.fromtimestamp(NOW_S - 30, UTC), usegmt=True), 0.0),  # a date passed
    ],
)
def test_retry_after(header: str | None, expected_s: float | None) -> None:
    assert retry_after_s(header, NOW_S) == (pytest.approx(expected_s) if expected_s is not None else None)


def test_the_signature_is_what_the_documented_check_expects() -> None:
    body = make_event().to_json().encode()
    header = sign(SECRET, body)
    assert header.startswith("sha256=") and len(header) == len("sha256=") + 64
    assert verify(body, header, SECRET)
    assert not verify(body, sign("other", body), SECRET)
    # and the module's own receiver-side check agrees with it
    assert verify_signature(SECRET, body, header)
    assert not verify_signature(SECRET, body + b" ", header), "a changed body fails"
    assert not verify_signature("other", body, header), "another secret fails"


def test_the_documented_check_accepts_the_bridge_s_signatures() -> None:
    # given: the receiver's snippet as docs/bridges.md gives it (## Webhooks, the first Python block)
    docs = DOCS.read_text(encoding="utf-8")
    assert "## Webhooks" in docs, f"{DOCS} has no ## Webhooks section"
    snippet = docs.split("## Webhooks", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {}
    exec(snippet, namespace)  # the reader's copy-paste, run as they would run it
    documented = cast(Callable[[bytes, str, str], bool], namespace["verify"])
    body = make_event().to_json().encode()
    # then: it accepts what the bridge signs, and nothing else
    assert documented(body, sign(SECRET, body), SECRET)
    assert not documented(body + b" ", sign(SECRET, body), SECRET)
    assert not documented(body, sign("other", body), SECRET)
