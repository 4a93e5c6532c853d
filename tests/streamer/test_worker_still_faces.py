"""A worker embeds a still face once per batch of its camera, and counts what it reused."""

from __future__ import annotations

import numpy as np
from prometheus_client import REGISTRY

from streamer.analysis import FrameResult
from streamer.bench_setup import temporary_home
from streamer.worker import Worker
from tests.conftest import people_image
from vigil.config import Settings
from vigil.models.pipeline import FacePipeline
from vigil.streams import StreamEntry


def reused_count(camera: str) -> float:
    return REGISTRY.get_sample_value("vigil_faces_reused_total", {"camera": camera}) or 0.0


def test_a_worker_reuses_a_still_faces_embedding_within_its_camera(
    settings: Settings, pipeline: FacePipeline
) -> None:
    photo = people_image("two_people.jpg")
    with temporary_home(settings) as (home_settings, client):
        worker = Worker(client, home_settings, pipeline)
        worker.bus.ensure_group()
        before = {camera: reused_count(camera) for camera in ("porch", "gate")}
        # given the same picture as frames 1 and 2 of camera porch and frame 1 of camera gate
        for camera, number in (("porch", 1), ("porch", 2), ("gate", 1)):
            worker.bus.publish(camera, number, float(number), photo)
        # when the worker takes them as one batch
        assert worker.step() == 3
        # then porch's second frame reused both faces and gate's frame none
        assert reused_count("porch") - before["porch"] == 2
        assert reused_count("gate") - before["gate"] == 0
        # and every frame's result carries its faces, porch's twice the same embeddings
        entries: list[StreamEntry] = client.xrange(home_settings.streamer.bus.faces_stream)  # type: ignore[assignment]
        results = {(r.camera, r.number): r for r in (FrameResult.from_fields(f) for _, f in entries)}
        assert {key: len(result.faces) for key, result in results.items()} == {
            ("porch", 1): 2,
            ("porch", 2): 2,
            ("gate", 1): 2,
        }
        for first, again in zip(results["porch", 1].faces, results["porch", 2].faces, strict=True):
            np.testing.assert_array_equal(first.embedding, again.embedding)
