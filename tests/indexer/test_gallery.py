"""The Redis gallery against real servers: round trips, atomicity, notifications, crashes (export and
import: ``test_backup.py``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from indexer.deletions import TOMBSTONE_KEEP_S, tombstone_commands
from indexer.gallery import Gallery, erased_marker
from indexer.records import NewTemplate
from tests.indexer.conftest import RedisBackend, is_alive, stop_embedded
from vigil.config import load_settings
from vigil.config.redis import RedisConfig
from vigil.errors import GalleryError, RedisUnavailableError
from vigil.streams import connect_redis

pytestmark = pytest.mark.redis

REPO_ROOT = Path(__file__).resolve().parents[2]
DIM = 8


def make_templates(count: int, version: str = "v1", dim: int = DIM, seed: int = 0) -> list[NewTemplate]:
    """``count`` random unit templates of one embedder version."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        NewTemplate(version, vector, source=f"photo{i}.jpg", quality=0.5 + i / 100, captured_at=None)
        for i, vector in enumerate(vectors)
    ]


def test_round_trip_create_add_list_rename_delete(gallery: Gallery) -> None:
    # given two identities with templates
    alice = gallery.create_identity("alice", {"team": "red"})
    bob = gallery.create_identity("bob")
    new = make_templates(3)
    alice_ids = gallery.add_templates(alice.identity_id, new)
    gallery.add_templates(bob.identity_id, make_templates(2, seed=1))
    # then they read back as written
    assert [identity.name for identity in gallery.list_identities()] == ["alice", "bob"]
    assert gallery.get_identity(alice.identity_id) == alice
    assert gallery.find_by_name("alice") == alice and gallery.find_by_name("Alice") is None
    stored = gallery.identity_templates(alice.identity_id)
    assert [template.template_id for template in stored] == alice_ids
    assert np.array_equal(np.stack([t.embedding for t in stored]), np.stack([t.embedding for t in new]))
    assert stored[1].source == "photo1.jpg" and stored[1].quality == pytest.approx(0.51)
    assert gallery.template_count() == 5
    # when alice is renamed
    renamed = gallery.rename(alice.identity_id, "alice b")
    # then the old name is free and the new one finds her
    assert gallery.find_by_name("alice") is None
    assert gallery.find_by_name("alice b") == renamed and renamed.metadata == {"team": "red"}
    assert renamed.updated_at >= alice.updated_at
    # when bob is deleted
    assert gallery.delete_identity(bob.identity_id) == 2, "both of bob's templates are removed"
    # then only alice and her templates remain
    assert [identity.name for identity in gallery.list_identities()] == ["alice b"]
    assert gallery.template_count() == 3


def test_enroll_adds_identity_and_templates_together(gallery: Gallery) -> None:
    identity, template_ids = gallery.enroll("carol", make_templates(2))
    assert len(template_ids) == 2
    assert [t.template_id for t in gallery.identity_templates(identity.identity_id)] == template_ids


def test_duplicate_name_is_rejected(gallery: Gallery) -> None:
    # given alice and bob
    gallery.create_identity("alice")
    bob = gallery.create_identity("bob")
    # then neither a second alice nor renaming bob to alice is allowed
    with pytest.raises(GalleryError, match="already exists"):
        gallery.create_identity("alice")
    with pytest.raises(GalleryError, match="already exists"):
        gallery.rename(bob.identity_id, "alice")
    # but names are case-sensitive
    gallery.create_identity("Alice")
    assert len(gallery.list_identities()) == 3


@pytest.mark.parametrize(
    ("call", "message"),
    [
        # an identity id that was never created
        (lambda g: g.get_identity("0" * 32), "unknown identity id"),
        # adding templates to nobody
        (lambda g: g.add_templates("0" * 32, make_templates(1)), "unknown identity id"),
        # renaming nobody
        (lambda g: g.rename("0" * 32, "x"), "unknown identity id"),
        # deleting nobody
        (lambda g: g.delete_identity("0" * 32), "unknown identity id"),
        # an empty name
        (lambda g: g.create_identity(" "), "non-empty name"),
        # an embedding that is not a vector
        (
            lambda g: g.enroll("x", [NewTemplate("v1", np.zeros((2, 4), np.float32))]),
            r"shape \(D,\)",
        ),
        # NaN in an embedding
        (lambda g: g.enroll("x", [NewTemplate("v1", np.full(4, np.nan, np.float32))]), "NaN"),
    ],
    ids=["get", "add", "rename", "delete", "empty-name", "matrix", "nan"],
)
def test_bad_calls_raise_gallery_error(gallery: Gallery, call: object, message: str) -> None:
    version_before = gallery.version()
    with pytest.raises(GalleryError, match=message):
        call(gallery)  # type: ignore[operator]
    assert gallery.version() == version_before, "a rejected call changes nothing"
    assert gallery.list_identities() == []


def test_delete_erases_every_embedder_version_also_after_reconnecting(backend: RedisBackend) -> None:
    # given an identity with templates of two embedder versions, and someone else
    gallery = backend.gallery()
    alice = gallery.create_identity("alice")
    bob = gallery.create_identity("bob")
    gallery.add_templates(alice.identity_id, make_templates(2, "v1") + make_templates(3, "v2", dim=4))
    gallery.add_templates(bob.identity_id, make_templates(1, "v1", seed=2))
    # when alice is deleted
    assert gallery.delete_identity(alice.identity_id) == 5
    # then no version returns her templates, now or after reconnecting (embedded: restarted server)
    _assert_only_bob_remains(gallery, bob.identity_id)
    _assert_only_bob_remains(backend.reconnect(), bob.identity_id)


def test_a_deleted_identity_leaves_a_tombstone_of_its_id_digest_only(gallery: Gallery) -> None:
    # given alice, deleted
    alice = gallery.create_identity("alice")
    gallery.delete_identity(alice.identity_id)
    # then the gallery's tombstones hold the digest of her id, never the id itself
    tombstones = gallery.client.zrange(gallery.erased_key, 0, -1)
    assert tombstones == [erased_marker(alice.identity_id).encode()]
    assert alice.identity_id.encode() not in tombstones[0]


def test_tombstones_older_than_the_keep_time_go_at_the_next_deletion() -> None:
    # given a tombstone written now, at the keep time past
    commands = tombstone_commands([("erased", "digest")], now=TOMBSTONE_KEEP_S + 100.0)
    # then it is added at now, and those older than the keep time are pruned
    assert commands == [
        ["ZADD", "erased", repr(TOMBSTONE_KEEP_S + 100.0), "digest"],
        ["ZREMRANGEBYSCORE", "erased", "-inf", repr(100.0)],
    ]


def _assert_only_bob_remains(gallery: Gallery, bob_id: str) -> None:
    ids, owners, vectors = gallery.templates("v1")
    assert owners == [bob_id] and vectors.shape == (1, DIM)
    ids, owners, vectors = gallery.templates("v2")
    assert len(ids) == 0 and owners == [] and vectors.shape == (0, 0), "deleted templates came back"
    assert gallery.find_by_name("alice") is None
    assert [identity.name for identity in gallery.list_identities()] == ["bob"]
    assert gallery.template_count() == 1


def test_templates_never_mix_embedder_versions(gallery: Gallery) -> None:
    # given one identity enrolled with two embedders of different dimensions
    alice = gallery.create_identity("alice")
    v1 = make_templates(3, "dlib-1", dim=DIM)
    v2 = make_templates(2, "facenet-1", dim=4, seed=3)
    ids_v1 = gallery.add_templates(alice.identity_id, v1[:2] + v2[:1])
    ids_v2 = gallery.add_templates(alice.identity_id, v1[2:] + v2[1:])
    # when each version is read
    ids, owners, vectors = gallery.templates("dlib-1")
    # then only that version's templates come back, in id order
    assert ids.dtype == np.int64 and vectors.dtype == np.float32
    assert ids.tolist() == [ids_v1[0], ids_v1[1], ids_v2[0]]
    assert owners == [alice.identity_id] * 3
    assert np.array_equal(vectors, np.stack([t.embedding for t in v1]))
    ids, _, vectors = gallery.templates("facenet-1")
    assert ids.tolist() == [ids_v1[2], ids_v2[1]] and vectors.shape == (2, 4)
    assert len(gallery.templates("unknown")[0]) == 0


def test_every_change_bumps_the_version_and_is_published(backend: RedisBackend) -> None:
    # given a gallery and a second client subscribed to its channel
    gallery = backend.gallery()
    subscriber = backend.client().pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    subscriber.subscribe(gallery.channel)
    start = gallery.version()
    # when five changes are made
    alice = gallery.create_identity("alice")
    gallery.add_templates(alice.identity_id, make_templates(1))
    gallery.rename(alice.identity_id, "alicia")
    gallery.enroll("bob", make_templates(1, seed=1))
    gallery.delete_identity(alice.identity_id)
    # then the version grew by five and each new version was announced, in order
    assert gallery.version() == start + 5
    received: list[int] = []
    deadline = time.monotonic() + 5
    while len(received) < 5 and time.monotonic() < deadline:
        message = subscriber.get_message(timeout=0.5)
        if message is not None:
            received.append(int(message["data"]))
    subscriber.close()
    assert received == list(range(start + 1, start + 6)), "one notification per change"


@pytest.mark.parametrize(
    ("url", "home_is_a_file", "message"),
    [
        # nothing listens on port 1
        ("redis://127.0.0.1:1/0", False, "cannot reach Redis at redis://127.0.0.1:1/0.*check REDIS_URL"),
        # not a Redis URL at all
        ("http://example.com", False, "invalid Redis URL"),
        # the password never appears in the message
        ("redis://user:secret@127.0.0.1:1/0", False, r"user:\*\*\*@127\.0\.0\.1"),
        # the embedded server's directory cannot be created
        (None, True, "cannot create the embedded Redis directory"),
    ],
    ids=["unreachable", "malformed", "password-redacted", "home-not-a-directory"],
)
def test_connection_failures_raise_redis_unavailable(
    tmp_path: Path, url: str | None, home_is_a_file: bool, message: str
) -> None:
    home = tmp_path / "home"
    if home_is_a_file:
        home.write_text("not a directory")
    with pytest.raises(RedisUnavailableError, match=message) as raised:
        connect_redis(RedisConfig(url=url), home)
    assert "secret" not in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        # the conventional variable is honoured
        ({"REDIS_URL": "redis://a:6379/0"}, "redis://a:6379/0"),
        # neither: the embedded server
        ({}, None),
    ],
    ids=["redis-url", "embedded"],
)
def test_redis_url_environment_variable(environ: dict[str, str], expected: str | None) -> None:
    assert load_settings(environ=environ).redis.url == expected


def test_vigil_redis_url_wins_over_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://conventional:6379/0")
    monkeypatch.setenv("VIGIL_REDIS__URL", "redis://vigil:6379/0")
    assert load_settings().redis.url == "redis://vigil:6379/0"


def test_redis_url_overrides_the_file(tmp_path: Path) -> None:
    config = tmp_path / "vigil.yaml"
    config.write_text("redis:\n  url: redis://file:6379/0\n  embedded_appendfsync: everysec\n")
    settings = load_settings(config, environ={"REDIS_URL": "redis://env:6379/0"})
    assert settings.redis.url == "redis://env:6379/0" and settings.redis.embedded_appendfsync == "everysec"


def test_two_clients_share_the_embedded_server(tmp_path: Path) -> None:
    # given two connections to the embedded server of one home
    first = connect_redis(RedisConfig(), tmp_path)
    second = connect_redis(RedisConfig(), tmp_path)
    try:
        # then they reach the same server, which logs to an append-only file fsynced always
        assert (
            first.connection_pool.connection_kwargs["path"]
            == second.connection_pool.connection_kwargs["path"]
        )
        settings = {**second.config_get("appendonly"), **second.config_get("appendfsync")}
        assert settings == {"appendonly": "yes", "appendfsync": "always"}, "durable by default"
        first.set("shared", "yes")
        assert second.get("shared") == b"yes"
        assert (tmp_path / "redis" / "appendonly.aof").exists()
    finally:
        stop_embedded(first)
        second.close()
        first.close()


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import numpy as np

    from indexer.gallery import Gallery
    from indexer.records import NewTemplate
    from vigil.config.redis import RedisConfig
    from vigil.streams import connect_redis

    gallery = Gallery(connect_redis(RedisConfig(), Path(sys.argv[1])), namespace="crash")
    rng = np.random.default_rng(0)
    for number in range(100_000):
        templates = [
            NewTemplate(version, rng.normal(size=8).astype(np.float32), source=str(number))
            for version in ("v1", "v1", "v2")
        ]
        identity, _ = gallery.enroll(f"person{number}", templates)
        print(identity.identity_id, flush=True)
    """
)
ACKNOWLEDGED_BEFORE_KILL = 40
TEMPLATES_PER_PERSON = 3


@pytest.mark.slow
@pytest.mark.parametrize(
    "kill_server",
    [
        # only the writer dies; the orphaned embedded server is reused
        False,
        # the server dies too: a new one must replay the append-only file
        True,
    ],
    ids=["writer-killed", "writer-and-server-killed"],
)
def test_acknowledged_enrolments_survive_sigkill(tmp_path: Path, kill_server: bool) -> None:
    # given a writer process enrolling people in a loop against the embedded server
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )
    with writer:
        try:
            acknowledged = _read_acknowledged(writer, ACKNOWLEDGED_BEFORE_KILL)
        finally:
            # when it is killed mid-loop
            writer.send_signal(signal.SIGKILL)
            writer.wait(timeout=10)
    registry = json.loads((tmp_path / "redis" / "redis.db.settings").read_text())
    writer_socket_dir = Path(registry["pidfile"]).parent  # the killed writer cannot clean it up
    if kill_server:
        server_pid = int(Path(registry["pidfile"]).read_text())
        os.kill(server_pid, signal.SIGKILL)
        _wait_until_gone(server_pid)
    # then a new connection sees every acknowledged person with all templates, and nothing half-written
    client = connect_redis(RedisConfig(), tmp_path)
    try:
        gallery = Gallery(client, namespace="crash")
        identities = {identity.identity_id: identity for identity in gallery.list_identities()}
        missing = set(acknowledged) - set(identities)
        assert not missing, f"acknowledged but lost: {sorted(missing)[:3]}"
        assert len(identities) - len(acknowledged) <= 1, "at most the unacknowledged last one is extra"
        for identity_id in identities:
            templates = gallery.identity_templates(identity_id)
            assert len(templates) == TEMPLATES_PER_PERSON, f"{identity_id} is half-written"
        owners = gallery.templates("v1")[1] + gallery.templates("v2")[1]
        assert set(owners) == set(identities), "no orphan templates"
        assert len(owners) == TEMPLATES_PER_PERSON * len(identities)
        assert gallery.template_count() == len(owners)
        template_keys = list(client.scan_iter(match="crash:template:[0-9]*"))
        assert len(template_keys) == len(owners), "no template hash outside the version indexes"
    finally:
        stop_embedded(client)
        shutil.rmtree(writer_socket_dir, ignore_errors=True)


def _read_acknowledged(writer: subprocess.Popen[str], count: int) -> list[str]:
    """The first ``count`` identity ids the writer printed (each one acknowledged by Redis)."""
    assert writer.stdout is not None and writer.stderr is not None
    acknowledged: list[str] = []
    while len(acknowledged) < count:
        line = writer.stdout.readline()
        if not line:
            writer.wait(timeout=10)
            pytest.fail(f"writer exited early (rc {writer.returncode}): {writer.stderr.read()[-2000:]}")
        acknowledged.append(line.strip())
    return acknowledged


def _wait_until_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while is_alive(pid):
        assert time.monotonic() < deadline, f"embedded Redis server {pid} did not die"
        time.sleep(0.05)
