"""Images of unknown faces (``indexer.unknowns.keep_images``) on real Redis servers: kept only
when given, and gone with their entry whichever way it goes (expiry, forget, enrolment,
feedback, erasure). The images are real face crops of an LFW photo; the embeddings are
seeded synthetic ones, since only where the image goes is tested here (what it shows is
checked through the real worker in ``tests/streamer/test_learning.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from indexer.erase import erase_person
from indexer.gallery import Gallery
from indexer.records import NewTemplate
from indexer.sources import SourceStore
from indexer.unknowns import UnknownCluster, UnknownSighting, UnknownStore, enroll_cluster
from streamer.analysis import face_crop_jpeg
from tests.conftest import LFW, require
from vigil.errors import GalleryError
from vigil.image import load_image
from vigil.models.pipeline import FacePipeline

VERSION = "test-embedder"
DIM = 16


@pytest.fixture(scope="module")
def face_jpeg(pipeline: FacePipeline) -> bytes:
    """What a worker attaches to an unmatched face: the crop of a real one."""
    image = load_image(require(LFW / "lfw-deepfunneled" / "Hugo_Chavez" / "Hugo_Chavez_0001.jpg"))
    (face,) = pipeline.analyze([image])[0]
    jpeg = face_crop_jpeg(image, face.box_xyxy.tolist())
    assert jpeg is not None
    return jpeg


def sighting(entry_id: str, seed: int = 1) -> UnknownSighting:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(2, DIM)).astype(np.float32) * 0.05 + 1.0  # two faces of one person
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return UnknownSighting(
        entry_id, "door", f"door-run-{entry_id}", "2026-11-22T10:00:00+00:00", VERSION,
        vectors, [100.0, 90.0], [entry_id],
    )  # fmt: skip


def images_left(store: UnknownStore, entry_ids: list[str]) -> int:
    """Images still held, by the store's account and by scanning every key for a JPEG."""
    client, gallery = store.gallery.client, store.gallery
    raw = 0
    for key in client.scan_iter(match=f"{gallery.namespace}:*"):
        if client.type(key) == b"hash":
            raw += sum(value.startswith(b"\xff\xd8") for value in client.hgetall(key).values())
    assert raw == len(store.images(entry_ids)) == store.count_images(entry_ids)
    return raw


def test_a_track_keeps_an_image_only_when_given_one(gallery: Gallery, face_jpeg: bytes) -> None:
    store = UnknownStore(gallery, retention_s=600.0)
    # given one track kept with its face's image and one without (the setting off)
    store.keep(sighting("a" * 32), face_jpeg)
    store.keep(sighting("b" * 32, seed=2))
    # then only the first has an image, byte for byte, and reading entries does not load it
    assert store.images(["a" * 32, "b" * 32]) == {"a" * 32: face_jpeg}
    assert images_left(store, ["a" * 32, "b" * 32]) == 1
    assert {s.entry_id for s in store.entries()} == {"a" * 32, "b" * 32}
    # when the first is refreshed without an image (its track ended; the opt-in was turned off)
    store.keep(sighting("a" * 32))
    # then its image is gone with the old entry
    assert images_left(store, ["a" * 32, "b" * 32]) == 0


def test_an_image_that_is_not_a_jpeg_is_refused(gallery: Gallery) -> None:
    store = UnknownStore(gallery, retention_s=600.0)
    with pytest.raises(GalleryError, match="is not a JPEG"):
        store.keep(sighting("c" * 32), b"\x89PNG\r\n\x1a\n")
    assert store.entries() == [], "nothing is written"


def test_images_expire_with_their_track(gallery: Gallery, face_jpeg: bytes) -> None:
    # given a store keeping unknown faces for one second, with an image
    store = UnknownStore(gallery, retention_s=1.0)
    store.keep(sighting("d" * 32), face_jpeg)
    assert images_left(store, ["d" * 32]) == 1
    # when the retention period has passed, then the image is gone (Redis expiry: nothing to run)
    time.sleep(1.3)
    assert images_left(store, ["d" * 32]) == 0 and store.entries() == []


def forget_cluster(store: UnknownStore, cluster: UnknownCluster, sources: SourceStore) -> None:
    store.forget(cluster.cluster_id)


def forget_everything(store: UnknownStore, cluster: UnknownCluster, sources: SourceStore) -> None:
    store.forget_all(entries=True)


def enrol_cluster(store: UnknownStore, cluster: UnknownCluster, sources: SourceStore) -> None:
    enroll_cluster(store, cluster.cluster_id, "Zoe")


def feedback_is(store: UnknownStore, cluster: UnknownCluster, sources: SourceStore) -> None:
    store.consume_entries(cluster.entries)  # what `vigil feedback EVENT --is NAME` does to the entry


def erase_after_interrupted_enrolment(
    store: UnknownStore, cluster: UnknownCluster, sources: SourceStore
) -> None:
    identity, _ = store.gallery.enroll("Zoe", [NewTemplate(VERSION, sighting("0" * 32).embeddings[0])])
    # enrolment marked the cluster, then stopped before consuming its tracks
    store.gallery.client.hset(store.gallery.key(f"unknown:cluster:{cluster.cluster_id}"), "enrolled_as",
                              identity.identity_id)  # fmt: skip
    erase_person(store.gallery, sources, identity.identity_id)


@pytest.mark.parametrize(
    "action",
    [
        forget_cluster,  # `vigil unknowns forget CLUSTER`
        forget_everything,  # `vigil unknowns forget --all`
        enrol_cluster,  # `vigil unknowns enroll`: images are not templates, they go
        feedback_is,  # `vigil feedback --is`: the entry became a template
        erase_after_interrupted_enrolment,  # `vigil people delete` finishes what enrolment left
    ],
    ids=["forget", "forget-all", "enroll", "feedback-is", "erase"],
)
def test_images_go_with_their_tracks(
    gallery: Gallery,
    face_jpeg: bytes,
    tmp_path: Path,
    action: Callable[[UnknownStore, UnknownCluster, SourceStore], None],
) -> None:
    # given two tracks of one stranger, kept with images and clustered
    store = UnknownStore(gallery, retention_s=600.0)
    entry_ids = ["e" * 32, "f" * 32]
    for seed, entry_id in enumerate(entry_ids):
        store.keep(sighting(entry_id, seed), face_jpeg)
    (cluster,) = store.cluster(VERSION, 0.9)
    assert images_left(store, entry_ids) == 2
    # when the cluster's tracks are deleted, one way or another
    action(store, cluster, SourceStore(tmp_path / "sources"))
    # then no image of them is left anywhere
    assert images_left(store, entry_ids) == 0
