"""Bad input to `vigil unknowns`, `vigil feedback` and `vigil people history|aging`: one clear line each.

One home for the module, with its embedded Redis holding one enrolled person (Ann), so the
errors about unknown names, clusters, events and entries are the only thing wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from indexer.gallery import Gallery
from indexer.records import NewTemplate
from tests.conftest import stop_embedded
from tests.test_cli import assert_one_line_error, run_vigil
from vigil.config.redis import RedisConfig
from vigil.streams import connect_redis

pytestmark = [pytest.mark.redis, pytest.mark.slow]

NO_SUCH_EVENT = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("learning-cli")
    client = connect_redis(RedisConfig(), path)
    # a dlib-like norm (1.41): the gallery refuses vectors its model cannot produce
    Gallery(client).enroll("Ann", [NewTemplate("dlib_resnet_v1+flip", np.full(128, 0.125, np.float32))])
    yield path
    stop_embedded(client)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        # a cluster that was never made
        (["unknowns", "enroll", "99", "Zoe"], "no unknown cluster 99"),
        # a cluster id that is not a number
        (["unknowns", "enroll", "first", "Zoe"], "malformed cluster id 'first'"),
        # forget without saying what
        (["unknowns", "forget"], "give either a CLUSTER number or --all"),
        # an event id that is not one
        (["feedback", "event-7", "--not", "Ann"], "malformed event id 'event-7'"),
        # a well-formed id of an event that does not exist
        (["feedback", NO_SUCH_EVENT, "--is", "Ann"], f"no event {NO_SUCH_EVENT}"),
        # correcting towards someone not enrolled
        (["feedback", NO_SUCH_EVENT, "--not", "Nobody"], "nobody named 'Nobody'"),
        # the history of someone not enrolled
        (["people", "history", "Nobody"], "nobody named 'Nobody'"),
        # undoing an entry that does not exist
        (["people", "history", "Ann", "--undo", "5"], "there is no history entry 5"),
        # aging for someone not enrolled
        (["people", "aging", "Nobody", "on"], "nobody named 'Nobody'"),
    ],
    ids=[
        "unknown-cluster",
        "malformed-cluster",
        "forget-nothing",
        "malformed-event",
        "unknown-event",
        "feedback-unknown-name",
        "history-unknown-name",
        "undo-missing-entry",
        "aging-unknown-name",
    ],
)
def test_bad_input_is_one_clear_line(home: Path, args: list[str], fragment: str) -> None:
    assert_one_line_error(run_vigil(*args, home=home), fragment)


def test_listing_with_nothing_kept_says_what_to_do(home: Path) -> None:
    listed = run_vigil("unknowns", "list", home=home)
    assert listed.returncode == 0, listed.stderr
    assert "run `vigil unknowns cluster`" in listed.stdout


@pytest.mark.parametrize(
    ("folder", "fragment"),
    [
        ("/proc/vigil/faces", "cannot create /proc/vigil/faces"),  # a folder that cannot be made
        ("/proc/version", "cannot create /proc/version"),  # a file, not a folder
    ],
    ids=["unmakeable", "a-file"],
)
def test_an_images_folder_that_cannot_be_written_is_refused_first(
    home: Path, folder: str, fragment: str
) -> None:
    result = run_vigil("unknowns", "list", "--images", folder, home=home)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"argument --images: {fragment}" in result.stderr, result.stderr
