"""Biometric data at rest is readable by its owner only (defect 8 of issue 13): the data
directory is 0700, the embedded Redis's files (AOF, RDB), exports and kept photos 0600; and
the retention of unknown passers-by is a stated default, documented where users read."""

from __future__ import annotations

import re
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import redis

from indexer.backup import export_gallery
from indexer.gallery import Gallery
from indexer.records import NewTemplate
from indexer.sources import SourceStore
from tests.conftest import stop_embedded
from vigil.config import load_settings
from vigil.config.redis import RedisConfig
from vigil.files import write_text_atomically
from vigil.streams import connect_redis

REPO_ROOT = Path(__file__).resolve().parents[1]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def wait_for_persistence(client: redis.Redis) -> None:
    """Until no background save or AOF rewrite runs."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info = client.info("persistence")
        if not (
            info["rdb_bgsave_in_progress"] or info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"]
        ):
            return
        time.sleep(0.05)
    raise AssertionError("Redis did not finish saving in 30 s")


@pytest.mark.redis
def test_embedded_redis_files_are_owner_only(tmp_path: Path) -> None:
    # given a data directory that does not exist yet
    home = tmp_path / "home"
    # when the embedded Redis starts, a person is enrolled, and Redis snapshots and rewrites its AOF
    client = connect_redis(RedisConfig(), home)
    try:
        Gallery(client).enroll("Ada", [NewTemplate("custom-v1", np.ones(8, np.float32))])
        client.bgsave()
        wait_for_persistence(client)
        client.bgrewriteaof()
        wait_for_persistence(client)
        # then the directories are 0700 and every file Redis wrote is 0600
        assert mode(home) == 0o700, oct(mode(home))
        assert mode(home / "redis") == 0o700, oct(mode(home / "redis"))
        files = [path for path in (home / "redis").rglob("*") if path.is_file()]
        assert {"appendonly.aof", "redis.db"} <= {path.name for path in files}, files
        loose = {path.name: oct(mode(path)) for path in files if mode(path) & 0o077}
        assert loose == {}, f"readable by others: {loose}"
    finally:
        stop_embedded(client)


@pytest.mark.redis
def test_an_existing_world_readable_home_is_tightened(tmp_path: Path) -> None:
    # given a data directory and Redis files left world-readable by an older Vigil
    home = tmp_path / "home"
    client = connect_redis(RedisConfig(), home)
    Gallery(client).enroll("Ada", [NewTemplate("custom-v1", np.ones(8, np.float32))])
    stop_embedded(client)
    for path in [home, home / "redis"]:
        path.chmod(0o755)
    for path in (home / "redis").iterdir():
        if path.is_file():
            path.chmod(0o644)
    # when Vigil starts again, then home, Redis directory and files are owner-only again
    client = connect_redis(RedisConfig(), home)
    try:
        assert mode(home) == 0o700 and mode(home / "redis") == 0o700
        loose = {p.name: oct(mode(p)) for p in (home / "redis").iterdir() if p.is_file() and mode(p) & 0o077}
        assert loose == {}, f"readable by others: {loose}"
    finally:
        stop_embedded(client)


@pytest.mark.redis
def test_exports_and_kept_photos_are_owner_only(tmp_path: Path) -> None:
    # given a gallery with one person and a photo of them kept
    home = tmp_path / "home"
    client = connect_redis(RedisConfig(), home)
    try:
        gallery = Gallery(client)
        gallery.enroll("Ada", [NewTemplate("custom-v1", np.ones(8, np.float32))])
        photo = tmp_path / "ada.jpg"
        photo.write_bytes(b"\xff\xd8not really a jpeg")
        photo.chmod(0o644)
        # when the photo is kept and the gallery exported
        kept = SourceStore(home / "sources").keep("a" * 32, 1, photo)
        export = tmp_path / "exports" / "backup.jsonl"
        export_gallery(gallery, export)
        # then both files are 0600, whatever the umask and the original's mode
        assert mode(kept) == 0o600, oct(mode(kept))
        assert mode(export) == 0o600, oct(mode(export))
    finally:
        stop_embedded(client)


def test_atomic_writes_create_owner_only_files(tmp_path: Path) -> None:
    # given no file yet; when written atomically, then it is 0600 and nothing else is left behind
    target = tmp_path / "new" / "report.json"
    write_text_atomically(target, "{}")
    assert mode(target) == 0o600 and [p.name for p in target.parent.iterdir()] == ["report.json"]


def test_unknown_retention_is_stated_in_readme_and_docs() -> None:
    # given the default retention of unknown passers-by's embeddings
    days = load_settings(environ={}).indexer.unknowns.retention_s / 86400
    # then README says it in its privacy section, and the settings reference gives it
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## What Vigil keeps.*?(?=^## )", readme, flags=re.S | re.M)
    assert section is not None, "README has no '## What Vigil keeps' section"
    assert f"{days:g} days" in section.group(0), "the section does not state the unknowns' retention"
    assert "retention_s" in section.group(0)
    reference = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert "passers-by" in reference, "docs/configuration.md does not explain the retention"
