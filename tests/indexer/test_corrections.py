"""Stores beside the gallery (negatives, feedback, history, unknowns, aging) on real Redis servers,
and the pure rules behind them, with seeded synthetic embeddings (the real-photo cases are in
``tests/streamer/test_learning.py``)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from indexer.aging import Recognition, age_templates, is_opted_in, refusal, set_opted_in
from indexer.clustering import cluster_tracks, track_means
from indexer.corrections import Corrections, apply_feedback, undo
from indexer.erase import erase_person
from indexer.gallery import Gallery
from indexer.records import NewTemplate
from indexer.search import Decision, IdentityMatch, veto_by_negatives
from indexer.sources import SourceStore
from indexer.unknowns import UnknownSighting, UnknownStore, enroll_cluster, parse_cluster_id
from vigil.config.aging import AgingConfig
from vigil.errors import GalleryError
from vigil.typing import Embedding

VERSION = "test-embedder"
DIM = 16


def unit(seed: int) -> Embedding:
    vector = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


def near(vector: Embedding, cosine: float, seed: int) -> Embedding:
    """A unit vector at exactly ``cosine`` to ``vector``."""
    other = unit(seed)
    other -= float(other @ vector) * vector
    other /= np.linalg.norm(other)
    return (cosine * vector + math.sqrt(1 - cosine**2) * other).astype(np.float32)


def sighting(entry_id: str, vectors: list[Embedding], camera: str = "door") -> UnknownSighting:
    return UnknownSighting(
        entry_id, camera, f"{camera}-run-{entry_id}", "2026-11-22T10:00:00+00:00", VERSION,
        np.stack(vectors), [100.0] * len(vectors), [entry_id],
    )  # fmt: skip


def recognition(**overrides: object) -> Recognition:
    fields: dict[str, object] = {
        "identity_id": "x", "event_id": "e" * 32, "embedder_version": VERSION, "embedding": unit(1),
        "score": 0.95, "margin": 0.1, "threshold": 0.9, "face_px": 100.0, "quality": 90.0,
        "frames": 5, "agreeing_frames": 5, "captured_at": "2026-11-22T10:00:00+00:00",
    }  # fmt: skip
    fields.update(overrides)
    return Recognition(**fields)  # type: ignore[arg-type]


# --- pure rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("negative_score", "expected"),
    [
        (-math.inf, "alice"),  # no negatives: the decision stands
        (0.80, "alice"),  # negative far below the template (0.95): still alice
        (0.93, None),  # negative within the margin (0.05) of the template: vetoed
        (1.00, None),  # the corrected face itself: vetoed
    ],
)
def test_a_negative_vetoes_like_a_runner_up(negative_score: float, expected: str | None) -> None:
    decision = Decision("alice", 0.95, math.inf, (IdentityMatch("alice", 0.95, 1),))
    assert veto_by_negatives(decision, negative_score, margin=0.05).identity_id == expected


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        ({}, None),  # confident, whole track agrees, big face
        ({"frames": 2, "agreeing_frames": 2}, "track of 2 frames"),  # too short
        ({"agreeing_frames": 4}, "only 4 of 5 frames"),  # one frame disagreed
        ({"score": 0.91}, "below threshold + extra"),  # above threshold but not by extra_score
        ({"margin": 0.01}, "margin 0.010"),  # a look-alike too close
        ({"margin": math.inf}, None),  # the only person enrolled: no runner-up
        ({"face_px": 30.0}, "face of 30 px"),  # too small
    ],
)
def test_aging_takes_only_confident_recognitions(overrides: dict[str, object], refused: str | None) -> None:
    reason = refusal(recognition(**overrides), AgingConfig(extra_score=0.02, min_margin=0.05, min_face_px=60))
    assert (reason is None) if refused is None else (reason is not None and refused in reason), reason


def test_clustering_separates_people_and_orders_labels_by_size() -> None:
    # given three tracks of one person, two of another and one of a third (each 2 faces)
    a, b, c = unit(1), unit(2), unit(3)
    tracks = [np.stack([near(person, 0.97, seed), near(person, 0.96, seed + 50)]) for person, seed in
              [(b, 10), (a, 11), (a, 12), (c, 13), (b, 14), (a, 15)]]  # fmt: skip
    # when clustered at similarity 0.9
    labels = cluster_tracks(track_means(tracks), 0.9)
    # then the people are apart, the largest (a) is cluster 0
    assert labels.tolist() == [1, 0, 0, 2, 1, 0]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("3", 3), (" 12 ", 12), ("abc", GalleryError), ("-1", GalleryError), ("1.5", GalleryError)],
)
def test_cluster_ids_are_numbers(raw: str, expected: int | type[Exception]) -> None:
    if isinstance(expected, int):
        assert parse_cluster_id(raw) == expected
    else:
        with pytest.raises(expected, match="malformed cluster id"):
            parse_cluster_id(raw)


# --- stores on Redis -----------------------------------------------------------------------


def test_unknown_entries_and_clusters_expire(gallery: Gallery) -> None:
    # given a store keeping unknown faces for one second
    store = UnknownStore(gallery, retention_s=1.0)
    store.keep(sighting("a" * 32, [unit(1)]))
    store.cluster(VERSION, 0.9)
    assert len(store.entries()) == 1 and len(store.clusters()) == 1
    # when the retention period has passed, then both are gone (Redis expiry, nothing to run)
    time.sleep(1.3)
    assert store.entries() == [] and store.clusters() == []
    assert store.entry_for_event("a" * 32) is None


def test_enrolling_a_cluster_adds_every_embedding_and_refuses_bad_input(gallery: Gallery) -> None:
    store = UnknownStore(gallery, retention_s=600.0)
    person = unit(7)
    store.keep(sighting("1" * 32, [near(person, 0.97, 1), near(person, 0.96, 2)]))
    store.keep(sighting("2" * 32, [near(person, 0.97, 3)], camera="yard"))
    (cluster,) = store.cluster(VERSION, 0.9)
    # unknown cluster, empty name: clear errors, nothing written
    with pytest.raises(GalleryError, match=f"no unknown cluster {cluster.cluster_id + 1}"):
        enroll_cluster(store, cluster.cluster_id + 1, "Zoe")
    with pytest.raises(GalleryError, match="invalid identity name"):
        enroll_cluster(store, cluster.cluster_id, " ")
    identity, added = enroll_cluster(store, cluster.cluster_id, "Zoe")
    assert added == 3 and store.entries() == []
    templates = gallery.identity_templates(identity.identity_id)
    assert {(t.origin, t.embedder_version) for t in templates} == {("unknowns", VERSION)}
    with pytest.raises(GalleryError, match="already enrolled"):
        enroll_cluster(store, cluster.cluster_id, "Zoe")


def test_undo_reverses_additions_only_once(gallery: Gallery) -> None:
    identity, _ = gallery.enroll("Ann", [NewTemplate(VERSION, unit(1))])
    negative = Corrections(gallery).add_negative(identity.identity_id, VERSION, unit(2), "f" * 32)
    entries = gallery.history(identity.identity_id)
    assert [(e.entry, e.action, e.item, e.origin) for e in entries] == [
        (1, "added", "template", "enrol"),
        (2, "added", "negative", "feedback"),
    ]
    undo(gallery, identity.identity_id, 2)
    assert Corrections(gallery).negatives(VERSION)[0] == []
    assert gallery.history(identity.identity_id)[-1].item_id == negative
    with pytest.raises(GalleryError, match="already removed"):
        undo(gallery, identity.identity_id, 2)
    with pytest.raises(GalleryError, match="is a removal"):
        undo(gallery, identity.identity_id, 3)
    with pytest.raises(GalleryError, match="no history entry 9"):
        undo(gallery, identity.identity_id, 9)


def test_aging_keeps_templates_bounded_and_diverse(gallery: Gallery) -> None:
    identity, _ = gallery.enroll("Ben", [NewTemplate(VERSION, unit(1))])
    config = AgingConfig(enabled=False, max_templates=2, max_similarity=0.97)
    seen = [near(unit(1), 0.93, seed) for seed in (2, 3, 4)]
    # not opted in (and aging off globally): nothing happens
    assert (
        age_templates(gallery, recognition(identity_id=identity.identity_id, embedding=seen[0]), config)
        is None
    )
    set_opted_in(gallery, identity.identity_id, True)
    assert is_opted_in(gallery, identity.identity_id)
    added = [
        age_templates(gallery, recognition(identity_id=identity.identity_id, embedding=face), config)
        for face in seen
    ]
    assert all(template_id is not None for template_id in added)
    # a near-duplicate of a template adds nothing
    duplicate = near(seen[2], 0.99, 9)
    assert (
        age_templates(gallery, recognition(identity_id=identity.identity_id, embedding=duplicate), config)
        is None
    )
    # at most two aging templates: the oldest went, enrolment stayed
    kept = {(t.origin, t.template_id) for t in gallery.identity_templates(identity.identity_id)}
    assert {origin for origin, _ in kept} == {"enrol", "aging"} and len(kept) == 3
    assert ("aging", added[0]) not in kept
    assert [e.action for e in gallery.history(identity.identity_id)][-2:] == ["removed", "added"]


def test_erasing_a_person_cascades_to_every_store(gallery: Gallery, tmp_path: object) -> None:
    # given a person with templates, an aging opt-in, a negative, feedback, history and an enrolled cluster
    store = UnknownStore(gallery, retention_s=600.0)
    store.keep(sighting("3" * 32, [unit(5)]))
    (cluster,) = store.cluster(VERSION, 0.9)
    identity, _ = enroll_cluster(store, cluster.cluster_id, "Cleo")
    set_opted_in(gallery, identity.identity_id, True)
    apply_feedback(gallery, "4" * 32, "not", "Cleo", VERSION, unit(6))
    apply_feedback(gallery, "5" * 32, "is", "Cleo", VERSION, unit(7))
    other, _ = gallery.enroll("Dan", [NewTemplate(VERSION, unit(8))])
    before = set(gallery.client.scan_iter(match=f"{gallery.namespace}:*"))
    # when she is erased
    erased = erase_person(gallery, SourceStore(tmp_path / "sources"), identity.identity_id)  # type: ignore[operator]
    # then every store forgot her: nothing left names her id, no negatives, feedback or clusters
    assert (erased.templates, erased.negatives, erased.feedback, erased.clusters) == (2, 1, 2, 1)
    left = set(gallery.client.scan_iter(match=f"{gallery.namespace}:*"))
    for key in left:
        dump = key_contents(gallery, key)
        assert identity.identity_id.encode() not in key + dump, f"{key!r} still names her"
    assert Corrections(gallery).feedback() == [] and Corrections(gallery).negatives(VERSION)[0] == []
    assert store.clusters() == [] and not is_opted_in(gallery, identity.identity_id)
    assert gallery.get_identity(other.identity_id).name == "Dan" and len(left) < len(before)


def key_contents(gallery: Gallery, key: bytes) -> bytes:
    """A key's text values joined (embedding blobs left out), to search for an id."""
    client = gallery.client
    kind = client.type(key).decode()
    if kind == "hash":
        return b" ".join(v for v in client.hgetall(key).values() if len(v) < 200)
    if kind == "set":
        return b" ".join(client.smembers(key))
    if kind == "zset":
        return b" ".join(client.zrange(key, 0, -1))
    if kind == "list":
        return b" ".join(client.lrange(key, 0, -1))
    return client.get(key) or b""
