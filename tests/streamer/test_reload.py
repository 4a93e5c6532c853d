"""A running worker follows promoted heads and calibrations without a restart.

A real worker (real Redis, bus, models) analyses a photo of Barack Obama before and after
`vigil models promote`/`rollback`: each result carries the embedding space and the
calibration it was decided with, which the tracker copies into its events.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from indexer.calibration import shipped_calibration_path
from indexer.gallery import Gallery
from indexer.identify import Identifier
from streamer.analysis import FrameResult
from streamer.bench_setup import enroll_people, temporary_home
from streamer.worker import WORKERS_KEY, Worker
from tests.conftest import PEOPLE, people_image, require
from tests.streamer.conftest import make_camera
from vigil.artifacts import ArtifactRegistry
from vigil.config import Settings
from vigil.models.head import EmbeddingHead, head_space_version, head_to_bytes
from vigil.models.pipeline import FacePipeline
from vigil.streams import StreamEntry

OBAMA = "Barack Obama"


class CountingIdentifier(Identifier):
    """A real identifier that counts its refreshes (each reads the gallery version from Redis)."""

    refreshes = 0

    def refresh(self) -> bool:
        self.refreshes += 1
        return super().refresh()


@pytest.fixture
def worker(settings: Settings, pipeline: FacePipeline) -> Iterator[tuple[Worker, Settings, redis.Redis]]:
    require(PEOPLE / "obama.jpg")
    with temporary_home(settings) as (home_settings, client):
        running = Worker(client, home_settings, pipeline)
        running.bus.ensure_group()
        enroll_people(running.identifier, home_settings, {OBAMA: PEOPLE / "obama.jpg"})
        yield running, home_settings, client


def analyse_once(worker: Worker, client: redis.Redis, number: int, camera: str = "door") -> FrameResult:
    """Put the photo on the bus as a frame of ``camera``, let the worker take it, return its result."""
    worker.bus.publish(camera, number, float(number), people_image("obama.jpg"))
    assert worker.step() == 1
    entries: list[StreamEntry] = client.xrevrange(worker.config.bus.faces_stream, count=1)  # type: ignore[assignment]
    return FrameResult.from_fields(entries[0][1])


def named(result: FrameResult) -> list[str]:
    """Who the faces were taken for (the photo also holds a borderline non-face, left unknown)."""
    return [face.name for face in result.faces if face.name is not None]


def calibration_for(space: str, calibration_id: str) -> bytes:
    raw = json.loads(shipped_calibration_path("dlib_resnet_v1+flip").read_text(encoding="utf-8"))
    return json.dumps({**raw, "embedder_version": space, "calibration_id": calibration_id}).encode()


@pytest.mark.redis
def test_worker_follows_head_and_calibration_promotions(worker: tuple[Worker, Settings, redis.Redis]) -> None:
    running, settings, client = worker
    backbone = running.pipeline.embedder.version
    registry = ArtifactRegistry(settings.home)
    # given the worker deciding in the backbone's space with the shipped calibration
    before = analyse_once(running, client, 0)
    assert before.embedder_version == backbone
    assert "lfw-open-set" in before.calibration and named(before) == [OBAMA]
    # when a head (untrained: the identity on unit vectors) is promoted with its own calibration
    head = head_to_bytes(EmbeddingHead())
    space = head_space_version(backbone, head)
    files = {"head.pt": head, "calibration.json": calibration_for(space, "head-space-test")}
    stored = registry.add("head", files, embedder_version=backbone, metrics={}, data={})
    registry.promote("head", stored.version)
    # then the next frame is searched in the head's space, under the head's calibration
    with_head = analyse_once(running, client, 1)
    assert with_head.embedder_version == space != backbone
    assert "head-space-test" in with_head.calibration
    assert named(with_head) == [OBAMA], "the identity head must still name him"
    # when the head is rolled back and a new calibration for the backbone promoted
    registry.rollback("head")
    tuned = registry.add(
        "calibration",
        {"calibration.json": calibration_for(backbone, "tuned-test")},
        embedder_version=backbone,
        metrics={},
        data={},
    )
    registry.promote("calibration", tuned.version)
    # then the worker is back in the backbone's space, under the new calibration
    after = analyse_once(running, client, 2)
    assert after.embedder_version == backbone
    assert "tuned-test" in after.calibration and named(after) == [OBAMA]


def with_strict_vault(settings: Settings) -> Settings:
    """``settings`` with one camera, ``vault``, whose threshold no real match reaches."""
    strict = make_camera("clip.mp4", name="vault", match_threshold=0.999)
    return settings.model_copy(
        update={"streamer": settings.streamer.model_copy(update={"cameras": [strict]})}
    )


@pytest.mark.redis
def test_a_cameras_own_threshold_overrides_the_calibrated_one(
    worker: tuple[Worker, Settings, redis.Redis], pipeline: FacePipeline
) -> None:
    # given a worker whose configuration gives one camera a threshold no real match reaches
    _, settings, client = worker
    configured = with_strict_vault(settings)
    running = Worker(client, configured, pipeline)
    # when the same photo arrives from that camera and from another one
    from_vault = analyse_once(running, client, 0, camera="vault")
    from_door = analyse_once(running, client, 1, camera="door")
    # then only the other camera names him; the vault's result carries its own rule
    assert named(from_door) == [OBAMA] and named(from_vault) == []
    assert from_vault.threshold == 0.999 and "override" in from_vault.calibration
    assert from_vault.margin == from_door.margin, "an unset margin stays the calibrated one"


@pytest.mark.redis
def test_a_batch_refreshes_the_gallery_once_for_every_cameras_rule(
    worker: tuple[Worker, Settings, redis.Redis], pipeline: FacePipeline
) -> None:
    # given a worker (counting its identifier's refreshes) whose vault camera has its own threshold
    _, settings, client = worker
    configured = with_strict_vault(settings)
    running = Worker(client, configured, pipeline)
    running.identifier = CountingIdentifier.from_settings(Gallery(client), pipeline, configured)
    # when one batch holds the photo from the vault and from the door
    for number, camera in enumerate(["vault", "door"]):
        running.bus.publish(camera, number, float(number), people_image("obama.jpg"))
    assert running.step() == 2, "both frames in one batch"
    # then the gallery was refreshed once for the whole batch
    assert isinstance(running.identifier, CountingIdentifier)
    assert running.identifier.refreshes == 1, "the camera rules must not cost a refresh of their own"
    # and each camera's faces were decided with, and its result carries, its own rule
    entries: list[StreamEntry] = client.xrevrange(configured.streamer.bus.faces_stream, count=2)  # type: ignore[assignment]
    results = {result.camera: result for result in (FrameResult.from_fields(e[1]) for e in entries)}
    assert named(results["door"]) == [OBAMA] and named(results["vault"]) == []
    assert results["vault"].threshold == 0.999 and "camera vault's override" in results["vault"].calibration
    assert results["door"].threshold < 0.999 and "override" not in results["door"].calibration
    assert results["vault"].margin == results["door"].margin, "an unset margin stays the calibrated one"


@pytest.mark.redis
def test_a_workers_heartbeat_names_the_models_it_runs(worker: tuple[Worker, Settings, redis.Redis]) -> None:
    # given a running worker
    running, _, client = worker
    stop = threading.Event()
    thread = threading.Thread(target=running.run, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not client.hexists(WORKERS_KEY, running.consumer) and time.monotonic() < deadline:
            time.sleep(0.05)
        beat = json.loads(client.hget(WORKERS_KEY, running.consumer) or b"{}")  # type: ignore[arg-type]
    finally:
        stop.set()
        thread.join(30)
    # then its heartbeat (shown by `vigil status`) says which detector and embedding space it
    # runs, so a worker node on another backend is seen for what it is
    assert beat["detector"] == running.pipeline.detector.name == "yunet"
    assert beat["embedder"] == running.identifier.space_version == "sface_2021dec"
