"""Workers refuse a gallery of another model when they start, and `vigil run` stops with that one line
instead of restarting them (see ``indexer.identify`` and docs/models.md)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from indexer.gallery import Gallery
from indexer.records import NewTemplate
from streamer.bench_setup import temporary_home
from streamer.worker import Worker
from tests.conftest import SHARED_DATA, require, stop_embedded
from tests.test_cli import assert_one_line_error, run_vigil
from vigil.config import Settings
from vigil.config.redis import RedisConfig
from vigil.errors import GalleryError
from vigil.models.pipeline import FacePipeline
from vigil.streams import connect_redis

pytestmark = pytest.mark.redis

OTHER_MODEL = "dlib_resnet_v1+flip"  # another model than the configured default, sface_2021dec
HAMILTON = SHARED_DATA / "clips" / "hamilton.mp4"


def enrol_with_another_model(client: redis.Redis) -> None:
    """Ann and Bob enrolled with one template each, of another model only."""
    gallery = Gallery(client)
    for seed, name in enumerate(("Ann", "Bob")):
        vector = np.random.default_rng(seed).normal(size=128).astype(np.float32)
        gallery.enroll(name, [NewTemplate(OTHER_MODEL, vector / np.linalg.norm(vector))])


@pytest.fixture
def home_of_another_model(tmp_path: Path, settings: Settings, pipeline: FacePipeline) -> Iterator[Path]:
    """A VIGIL_HOME whose gallery holds another model's templates only, with the session's converted
    weights (the pipeline fixture made them) so the service's workers load without converting."""
    (tmp_path / "cache").symlink_to(settings.cache_dir, target_is_directory=True)
    client = connect_redis(RedisConfig(), tmp_path)
    enrol_with_another_model(client)
    yield tmp_path
    stop_embedded(client)


def test_a_worker_refuses_a_gallery_of_another_model_at_start(
    settings: Settings, pipeline: FacePipeline
) -> None:
    with temporary_home(settings) as (home_settings, client):
        # given a gallery whose people have templates of another model only
        enrol_with_another_model(client)
        worker = Worker(client, home_settings, pipeline)
        # when the worker starts, then it refuses, naming the model of the gallery and the fix
        with pytest.raises(
            GalleryError, match=rf"templates for {re.escape(OTHER_MODEL)} only, .*`vigil gallery reembed`"
        ):
            worker.start()


@pytest.mark.slow
def test_vigil_run_stops_with_one_line_on_a_gallery_of_another_model(home_of_another_model: Path) -> None:
    clip = require(HAMILTON)
    # when the service runs on a clip with the configured (default) embedder
    result = run_vigil(
        "run",
        str(clip),
        "--as-fast-as-possible",
        "--workers",
        "1",
        "--metrics-port",
        "0",
        home=home_of_another_model,
        timeout_s=180,
    )
    # then it stops, with exit status 2 and the workers' refusal as its one error line
    assert_one_line_error(result, f"the gallery holds templates for {OTHER_MODEL} only")
    assert result.stdout == "", "no event: nothing was matched"
