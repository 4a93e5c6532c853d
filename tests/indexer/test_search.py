"""FAISS template search: per-identity folding, add/remove, IVF recall, open-set decisions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from indexer.bench import make_queries, synthetic_gallery
from indexer.search import IdentityMatch, TemplateIndex, decide, normalise
from vigil.errors import GalleryError


def make_gallery(identities: int = 4, per_identity: int = 3, dim: int = 16, seed: int = 0):
    """Templates clustered per identity: ids 0..N-1, identity names 'p0', 'p1', ..."""
    rng = np.random.default_rng(seed)
    centres = normalise(rng.normal(size=(identities, dim)).astype(np.float32))
    owner = np.repeat(np.arange(identities), per_identity)
    templates = normalise(centres[owner] + 0.1 * rng.normal(size=(len(owner), dim)).astype(np.float32))
    return np.arange(len(owner), dtype=np.int64), [f"p{i}" for i in owner], templates, centres


def test_search_folds_templates_per_identity() -> None:
    # given 4 people with 3 templates each
    ids, names, templates, centres = make_gallery()
    index = TemplateIndex(dim=16)
    index.build(ids, names, templates)
    # when a person's centre is searched for the top 3 identities
    [matches] = index.search(centres[2], k=3)
    # then 3 distinct identities come back, the right one first, scores descending
    assert matches[0].identity_id == "p2"
    assert len({m.identity_id for m in matches}) == 3
    assert all(a.score >= b.score for a, b in itertools.pairwise(matches))
    assert names[matches[0].template_id] == "p2"


def test_add_and_remove_without_rebuild() -> None:
    ids, names, templates, centres = make_gallery()
    index = TemplateIndex(dim=16)
    index.build(ids[:9], names[:9], templates[:9])  # p3 not yet enrolled
    assert index.search(centres[3], k=1)[0][0].identity_id != "p3"
    # when p3's templates are added, p3 is found
    index.add(ids[9:], names[9:], templates[9:])
    assert index.search(centres[3], k=1)[0][0].identity_id == "p3"
    # when p3's templates are removed, p3 is never returned again
    assert index.remove(ids[9:]) == 3
    found = {m.identity_id for m in index.search(centres[3], k=10)[0]}
    assert "p3" not in found and len(index) == 9


def test_adding_an_existing_template_id_is_refused() -> None:
    ids, names, templates, _ = make_gallery()
    index = TemplateIndex(dim=16)
    index.build(ids, names, templates)
    with pytest.raises(GalleryError, match="already indexed"):
        index.add(ids[:1], names[:1], templates[:1])


def test_empty_index_returns_no_candidates() -> None:
    assert TemplateIndex(dim=8).search(np.ones((2, 8), np.float32)) == [[], []]


@pytest.mark.parametrize(
    ("call", "error"),
    [
        # query of the wrong dimension
        (lambda index: index.search(np.ones((1, 5), np.float32)), ValueError),
        # templates and ids of different lengths
        (lambda index: index.add(np.arange(2), ["a"], np.ones((2, 16), np.float32)), ValueError),
        # templates of the wrong dimension
        (lambda index: index.add(np.arange(1), ["a"], np.ones((1, 4), np.float32)), ValueError),
    ],
    ids=["query-dim", "lengths", "template-dim"],
)
def test_bad_arguments(call, error: type[Exception]) -> None:
    ids, names, templates, _ = make_gallery()
    index = TemplateIndex(dim=16)
    index.build(ids, names, templates)
    with pytest.raises(error):
        call(index)


def test_auto_chooses_flat_for_small_galleries() -> None:
    ids, names, templates, _ = make_gallery()
    index = TemplateIndex(dim=16, kind="auto")
    index.build(ids, names, templates)
    assert index.index_type == "flat"


def test_ivf_agrees_with_exact_search() -> None:
    # given a face-like synthetic gallery of 20,000 templates (4,000 people)
    templates, owner, centres, _ = synthetic_gallery(20_000, 64, 5)
    queries, truth = make_queries(centres, 300)
    names = [str(i) for i in owner]
    ids = np.arange(len(owner), dtype=np.int64)
    exact, ivf = TemplateIndex(64, kind="flat"), TemplateIndex(64, kind="ivf", probes=16)
    exact.build(ids, names, templates)
    ivf.build(ids, names, templates)
    assert ivf.index_type == "ivf"
    # when both answer the same queries
    exact_top = [m[0].identity_id for m in exact.search(queries, k=1)]
    ivf_top = [m[0].identity_id for m in ivf.search(queries, k=1)]
    # then IVF finds exact search's identity almost always, and exact search finds the truth
    agreement = np.mean([a == b for a, b in zip(exact_top, ivf_top, strict=True)])
    assert agreement >= 0.97, f"IVF agrees with exact search on {agreement:.1%}"
    assert np.mean([a == str(t) for a, t in zip(exact_top, truth, strict=True)]) >= 0.97


def _candidates(*scores: float) -> list[IdentityMatch]:
    return [IdentityMatch(f"p{i}", score, i) for i, score in enumerate(scores)]


@pytest.mark.parametrize(
    ("candidates", "threshold", "margin", "expected"),
    [
        (_candidates(0.95, 0.70), 0.9, 0.05, "p0"),  # clear winner above threshold
        (_candidates(0.85, 0.70), 0.9, 0.05, None),  # below threshold → unknown
        (_candidates(0.95, 0.93), 0.9, 0.05, None),  # above threshold but too close to the runner-up
        (_candidates(0.95), 0.9, 0.05, "p0"),  # a single candidate has no runner-up
        ([], 0.9, 0.05, None),  # empty gallery
    ],
    ids=["accept", "below-threshold", "no-margin", "single", "empty"],
)
def test_open_set_decision(candidates, threshold: float, margin: float, expected: str | None) -> None:
    decision = decide(candidates, threshold, margin)
    assert decision.identity_id == expected
    assert decision.is_unknown == (expected is None)
    if not candidates:
        assert math.isnan(decision.score)


def test_device_auto_uses_the_cpu_when_faiss_sees_no_gpu() -> None:
    import faiss

    from indexer.search import resolve_device

    expected = "cuda" if faiss.get_num_gpus() > 0 else "cpu"
    assert resolve_device("auto") == expected
    assert TemplateIndex(dim=4).device == expected
    if expected == "cpu":
        with pytest.raises(GalleryError, match="FAISS sees no GPU"):
            resolve_device("cuda")


@pytest.mark.gpu
def test_gpu_search_finds_what_cpu_search_finds() -> None:
    import faiss

    if faiss.get_num_gpus() == 0:
        pytest.skip("FAISS sees no GPU (install the gpu extra on a CUDA machine)")
    templates, owners, centres, _ = synthetic_gallery(600, 128, templates_per_identity=3)
    ids = np.arange(len(templates), dtype=np.int64)
    cpu, gpu = TemplateIndex(128, device="cpu"), TemplateIndex(128, device="cuda")
    for index in (cpu, gpu):
        index.build(ids, [str(owner) for owner in owners], templates)
    queries, _ = make_queries(centres, count=50)
    assert [m[0].identity_id for m in cpu.search(queries)] == [m[0].identity_id for m in gpu.search(queries)]
