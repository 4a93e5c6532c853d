"""Input hygiene (defect 12 of issue 13): names, ids from Redis used as paths, secrets in
output, unbounded durations, and images too large to decode."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from indexer.gallery import Gallery
from indexer.unknowns import UnknownSighting, UnknownStore
from tests.conftest import RedisBackend, stop_embedded
from tests.test_cli import run_vigil
from vigil.config import load_settings
from vigil.config.redis import RedisConfig
from vigil.errors import ConfigError, GalleryError, ImageError, RedisUnavailableError
from vigil.image import decode_image
from vigil.redact import redact_url
from vigil.streams import connect_redis

# -- names ----------------------------------------------------------------------------------

BAD_NAMES = [
    "\x1b[31mMallory\x1b[0m",  # an ANSI colour escape
    "Mallory\nEve\t3 template(s)",  # a forged second line in `people list`
    "Mallory\r",  # a carriage return rewrites the line on a terminal
    "Mallory\u202eevE",  # a right-to-left override (Unicode format character)
    "Mallory\x00",  # a NUL
    "M" * 201,  # longer than any real name
    "   ",  # blank
]


@pytest.mark.redis
def test_names_with_control_characters_are_refused(backend: RedisBackend) -> None:
    gallery = backend.gallery()
    alice = gallery.create_identity("Alice O'Brien-Núñez")  # given a real name with accents and marks
    for name in BAD_NAMES:
        # when a name holds a control or format character, then enrolment and renaming refuse it
        with pytest.raises(GalleryError, match="invalid identity name") as enrol_error:
            gallery.create_identity(name)
        with pytest.raises(GalleryError, match="invalid identity name"):
            gallery.rename(alice.identity_id, name)
        message = str(enrol_error.value)
        assert "\n" not in message and "\x1b" not in message, f"the error echoes the raw name: {message!r}"
    assert [identity.name for identity in gallery.list_identities()] == ["Alice O'Brien-Núñez"]


# -- ids read from Redis ----------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.slow
def test_unknown_images_stay_inside_the_folder(tmp_path: Path) -> None:
    # given an embedded Redis holding a kept unknown track, and a forged one whose id climbs out
    home, out = tmp_path / "home", tmp_path / "out"
    client = connect_redis(RedisConfig(), home)
    gallery = Gallery(client)
    store = UnknownStore(gallery, retention_s=3600)
    vectors = np.eye(2, 16, dtype=np.float32)
    jpeg = b"\xff\xd8\xff\xe0" + b"0" * 64
    store.keep(UnknownSighting("a" * 32, "door", "t1", "2026-11-22T10:00:00+00:00", "v1", vectors,
                               [1.0, 1.0], ["a" * 32]), jpeg)  # fmt: skip
    forged = "../../escaped"
    good = {key.decode(): value for key, value in client.hgetall(gallery.key("unknown:" + "a" * 32)).items()}
    client.hset(gallery.key(f"unknown:{forged}"), mapping=good)
    client.zadd(gallery.key("unknowns"), {forged: 1e12})
    store.cluster("v1", threshold=0.0)
    stop_embedded(client)
    # when a user copies the clusters' images to a folder
    listed = run_vigil("unknowns", "list", "--json", "--images", str(out), home=home)
    # then nothing is written outside it, and the good image is there
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr
    outside = [path for path in tmp_path.rglob("*.jpg") if out not in path.parents]
    assert outside == [], f"written outside {out}: {outside}"
    inside = sorted(path.name for path in out.rglob("*.jpg"))
    assert inside == [f"{'a' * 32}.jpg"], inside


# -- secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "hide_path", "expected"),
    [
        # a password in the user part
        ("redis://user:hunter2@host:6379/0", False, "redis://user:***@host:6379/0"),
        # a password without a user
        ("redis://:hunter2@host:6379/0", False, "redis://:***@host:6379/0"),
        # a password as a query parameter (redis-py reads ?password=)
        ("redis://host:6379/0?password=hunter2&db=1", False, "redis://host:6379/0?password=***&db=1"),
        # an RTSP camera
        ("rtsp://admin:hunter2@10.0.0.5:554/stream1", False, "rtsp://admin:***@10.0.0.5:554/stream1"),
        # a token in the query of an HTTP camera
        ("https://cam.example/live?token=hunter2", False, "https://cam.example/live?token=***"),
        # nothing secret: unchanged
        ("rtsp://10.0.0.5/stream1", False, "rtsp://10.0.0.5/stream1"),
        # not a URL at all: unchanged
        ("clip.mp4", False, "clip.mp4"),
        # a Home Assistant webhook: its id in the path is the secret
        ("http://ha:8123/api/webhook/hunter2", True, "http://ha:8123/***"),
        # a Slack webhook: the token is the path's last parts
        ("https://hooks.slack.com/services/T0/B0/hunter2", True, "https://hooks.slack.com/***"),
        # a Discord webhook: id and token in the path, and a query
        ("https://discord.com/api/webhooks/1/hunter2?wait=true", True, "https://discord.com/***"),
        # a query alone (whatever its parameters' names) and a fragment are hidden too
        ("http://10.0.0.5:8080/?sig=hunter2", True, "http://10.0.0.5:8080/***"),
        ("http://10.0.0.5:8080#hunter2", True, "http://10.0.0.5:8080/***"),
        # a user part, password or not (a token can be the user name), is hidden whole
        ("https://admin:hunter2@hooks.example/x", True, "https://***@hooks.example/***"),
        ("https://hunter2@hooks.example/x", True, "https://***@hooks.example/***"),
        # nothing after the host: nothing to hide
        ("https://hooks.example:8443", True, "https://hooks.example:8443"),
        ("https://hooks.example/", True, "https://hooks.example/"),
        # not a URL (no scheme): cut at its first / all the same
        ("ha:8123/api/webhook/hunter2", True, "ha:8123/***"),
        # a malformed host: the scheme only
        ("http://[::1/api/webhook/hunter2", True, "http://***"),
    ],
)
def test_redact_url(url: str, hide_path: bool, expected: str) -> None:
    shown = redact_url(url, hide_path=hide_path)
    assert shown == expected
    assert "hunter2" not in shown, f"the secret is shown: {shown}"


@pytest.mark.slow
def test_check_config_prints_no_password(tmp_path: Path) -> None:
    # given a configuration with a Redis password (user part and query) and an RTSP password
    config = tmp_path / "vigil.yaml"
    config.write_text(
        "redis:\n  url: redis://u:hunter2@127.0.0.1:6379/0?password=hunter3\n"
        "streamer:\n  cameras:\n    - name: door\n      source: rtsp://admin:hunter4@10.0.0.5/stream\n"
    )
    # when the settings are printed
    checked = run_vigil("--config", str(config), "check-config", home=tmp_path)
    # then no password is shown, but the rest of the URLs are
    assert checked.returncode == 0, checked.stderr
    assert "hunter" not in checked.stdout + checked.stderr, checked.stdout
    shown = json.loads(checked.stdout)
    assert shown["redis"]["url"] == "redis://u:***@127.0.0.1:6379/0?password=***"
    assert shown["streamer"]["cameras"][0]["source"] == "rtsp://admin:***@10.0.0.5/stream"


def test_start_up_banner_prints_no_password(capsys: pytest.CaptureFixture[str]) -> None:
    from vigil.cli.service import announce

    settings = load_settings(environ={"VIGIL_STREAMER__CAMERAS": json.dumps(
        [{"name": "door", "source": "rtsp://admin:hunter4@10.0.0.5/stream"}]
    )})  # fmt: skip
    announce(settings, None)
    banner = capsys.readouterr().err
    assert "hunter4" not in banner and "admin:***@10.0.0.5" in banner, banner


def test_connection_errors_print_no_password() -> None:
    # given a Redis URL whose password is a query parameter, on a port nobody listens on
    url = "redis://127.0.0.1:1/0?password=hunter5"
    # when connecting fails, then the message does not show the password
    with pytest.raises(RedisUnavailableError) as error:
        connect_redis(RedisConfig(url=url), Path("/nonexistent"))
    assert "hunter5" not in str(error.value), str(error.value)


# -- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [".inf", "1e20", ".nan"])
@pytest.mark.parametrize(
    "path",
    [
        "indexer.unknowns.retention_s",
        "streamer.tracker.cooldown_s",
        "streamer.events.max_age_s",
        "streamer.bus.stale_after_s",
    ],
)
def test_unbounded_durations_are_refused(tmp_path: Path, path: str, value: str) -> None:
    # given a YAML file setting a duration to infinity, not-a-number or 3e12 years
    *sections, leaf = path.split(".")
    yaml_text = "".join(f"{'  ' * depth}{section}:\n" for depth, section in enumerate(sections))
    config = tmp_path / "vigil.yaml"
    config.write_text(yaml_text + f"{'  ' * len(sections)}{leaf}: {value}\n")
    # when loaded, then the setting is named as invalid
    with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
        load_settings(config, environ={})


# -- images -----------------------------------------------------------------------------------


def huge_png(width: int, height: int) -> bytes:
    """A valid, all-black 8-bit grey PNG of any size, built without holding its pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    packer = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then black pixels
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_huge_image_is_refused_from_its_header() -> None:
    # given a 12000 x 8000 image (96 megapixels: 288 MB of RGB once decoded)
    data = huge_png(12_000, 8_000)
    assert len(data) < 1_000_000
    # when decoded, then it is refused before any pixel is decoded, with the limit in the message
    with pytest.raises(ImageError, match=r"12000×8000 .*megapixels"):
        decode_image(data, "huge.png")


def test_image_within_the_limit_is_decoded() -> None:
    # given a 640 x 480 PNG, well under the limit; when decoded, then it is read as RGB
    image = decode_image(huge_png(640, 480), "small.png")
    assert image.shape == (480, 640, 3) and int(image.max()) == 0
