"""Nearest-identity search over enrolled templates with FAISS, and the open-set decision.

Templates are L2-normalised, so inner product is cosine similarity (higher = more alike).
Each template has an int64 id (FAISS's) and belongs to one identity; a query's template
hits are folded per identity (best template wins), because people are enrolled with
several templates and we answer *who*, not *which photo*.

Index choice by size (``kind="auto"``): exact ``IndexFlatIP`` below
``IVF_MIN_TEMPLATES``, ``IndexIVFFlat`` above it (trained on the templates it is built
from; ``nprobe`` from ``probes``). Both are wrapped in an id map, so templates are added
and removed one by one without a rebuild.

On a machine with a GPU and a GPU build of FAISS (the ``gpu`` extra), searches run on a
GPU copy of the index (``device="auto"`` or ``"cuda"``); the CPU index stays the one that
is edited, and the copy is refreshed on the next search after an edit.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import faiss
import numpy as np
import numpy.typing as npt

from vigil.errors import GalleryError
from vigil.typing import Embeddings

logger = logging.getLogger(__name__)

IndexKind = Literal["auto", "flat", "ivf"]
IndexDevice = Literal["auto", "cpu", "cuda"]
# Below this many templates exact search is fast enough (~1 ms per query at 128-d on a
# 2-core CPU), and an IVF index could not be trained well anyway.
IVF_MIN_TEMPLATES = 50_000
# IVF lists per template count: the usual 4·√N rule of thumb.
IVF_LISTS_PER_SQRT_N = 4
# k-means needs a few dozen points per list; more only slows training.
IVF_TRAINING_POINTS_PER_LIST = 64
# How many candidate templates a query pulls before folding them per identity.
TEMPLATE_CANDIDATES_PER_IDENTITY = 4

TemplateIds = npt.NDArray[np.int64]


@dataclass(frozen=True)
class IdentityMatch:
    """One candidate identity for a query.

    Attributes:
        identity_id: The gallery's id of the person.
        score: Cosine similarity of the best template (−1 to 1, higher = more alike).
        template_id: Which template scored best.
    """

    identity_id: str
    score: float
    template_id: int


@dataclass(frozen=True)
class Decision:
    """The open-set answer for one face.

    Attributes:
        identity_id: Who it is, or None for *unknown*.
        score: Best identity's cosine similarity (NaN when the gallery is empty).
        margin: Best score minus the runner-up identity's (``inf`` with one candidate).
        candidates: The top identities, best first.
    """

    identity_id: str | None
    score: float
    margin: float
    candidates: tuple[IdentityMatch, ...]

    @property
    def is_unknown(self) -> bool:
        return self.identity_id is None


def normalise(embeddings: Embeddings) -> Embeddings:
    """Scale each row to unit length (rows of zeros stay zero)."""
    vectors = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def resolve_device(device: IndexDevice) -> Literal["cpu", "cuda"]:
    """``auto`` → ``cuda`` when this FAISS build sees a GPU, else ``cpu``.

    Raises:
        GalleryError: ``cuda`` was asked for but FAISS has no GPU support or sees no GPU.
    """
    gpus = int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0
    if device == "cuda" and gpus == 0:
        raise GalleryError(
            "indexer.faiss_device is cuda, but FAISS sees no GPU; install the gpu extra "
            "(faiss-gpu-cu12 instead of faiss-cpu) on a CUDA machine, or use auto"
        )
    if device == "auto":
        return "cuda" if gpus > 0 else "cpu"
    return device


def decide(candidates: Sequence[IdentityMatch], threshold: float, margin: float) -> Decision:
    """Accept the best identity only if it clears ``threshold`` *and* beats the runner-up by ``margin``.

    Args:
        candidates: Identities best first (as ``TemplateIndex.search`` returns them).
        threshold: Minimum cosine similarity to accept (higher = stricter).
        margin: Minimum lead over the second-best identity (higher = stricter).
    """
    if not candidates:
        return Decision(None, math.nan, math.inf, ())
    best = candidates[0]
    lead = best.score - candidates[1].score if len(candidates) > 1 else math.inf
    accepted = best.score >= threshold and lead >= margin
    return Decision(best.identity_id if accepted else None, best.score, lead, tuple(candidates))


def veto_by_negatives(decision: Decision, negative_score: float, margin: float) -> Decision:
    """Turn an accepted face back to *unknown* when a hard negative of the person is too close.

    A negative competes like a runner-up identity: the person's best template must beat
    the most similar negative by ``margin`` (see ``indexer.corrections``).

    Args:
        decision: The open-set decision for the face.
        negative_score: Cosine similarity of the face to the accepted person's most similar
            negative (``-inf`` when they have none).
        margin: The margin in force.
    """
    if decision.identity_id is None or decision.score - negative_score >= margin:
        return decision
    return Decision(
        None, decision.score, min(decision.margin, decision.score - negative_score), decision.candidates
    )


class TemplateIndex:
    """FAISS index of unit-length templates, searchable per identity.

    Example:
        >>> index = TemplateIndex(dim=128)
        >>> index.add(np.array([1, 2]), ["alice", "bob"], templates)
        >>> index.search(queries, k=1)[0][0].identity_id
        'alice'
    """

    def __init__(
        self, dim: int, kind: IndexKind = "auto", probes: int = 32, device: IndexDevice = "auto"
    ) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim
        self.kind: IndexKind = kind
        self.probes = probes
        self.device = resolve_device(device)
        self._index: faiss.Index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._gpu_copy: faiss.Index | None = None
        self._identity_of: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self._identity_of)

    @property
    def index_type(self) -> str:
        """``flat`` or ``ivf``: what the index currently is."""
        wrapped = faiss.downcast_index(self._index.index)  # type: ignore[attr-defined]
        return "ivf" if isinstance(wrapped, faiss.IndexIVF) else "flat"

    def build(self, template_ids: TemplateIds, identity_ids: Sequence[str], templates: Embeddings) -> None:
        """Replace the whole index with these templates, choosing flat or IVF by their count."""
        self._check(template_ids, identity_ids, templates)
        count = len(template_ids)
        use_ivf = self.kind == "ivf" or (self.kind == "auto" and count >= IVF_MIN_TEMPLATES)
        vectors = normalise(templates)
        if use_ivf:
            lists = max(1, min(int(IVF_LISTS_PER_SQRT_N * math.sqrt(count)), count // 39))
            quantizer = faiss.IndexFlatIP(self.dim)
            ivf = faiss.IndexIVFFlat(quantizer, self.dim, lists, faiss.METRIC_INNER_PRODUCT)
            ivf.train(_training_sample(vectors, lists))
            ivf.nprobe = min(self.probes, lists)
            index: faiss.Index = faiss.IndexIDMap2(ivf)
            # IndexIDMap2 does not own the wrapped index by default: keep Python references alive.
            index.referenced_objects = [ivf, quantizer]  # type: ignore[attr-defined]
        else:
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        index.add_with_ids(vectors, np.asarray(template_ids, dtype=np.int64))
        self._index = index
        self._gpu_copy = None
        self._identity_of = dict(zip((int(t) for t in template_ids), identity_ids, strict=True))
        logger.info("built %s index of %d templates", self.index_type, count)

    def add(self, template_ids: TemplateIds, identity_ids: Sequence[str], templates: Embeddings) -> None:
        """Add templates (ids must be new)."""
        self._check(template_ids, identity_ids, templates)
        clashes = [int(t) for t in template_ids if int(t) in self._identity_of]
        if clashes:
            raise GalleryError(f"template ids already indexed: {clashes[:5]}; remove them first")
        self._index.add_with_ids(normalise(templates), np.asarray(template_ids, dtype=np.int64))
        self._gpu_copy = None
        self._identity_of.update(zip((int(t) for t in template_ids), identity_ids, strict=True))

    def remove(self, template_ids: TemplateIds) -> int:
        """Remove templates by id; returns how many were present."""
        ids = np.asarray(template_ids, dtype=np.int64)
        removed = int(self._index.remove_ids(ids))  # type: ignore[arg-type]  # the SWIG wrapper takes arrays
        self._gpu_copy = None
        for template_id in ids:
            self._identity_of.pop(int(template_id), None)
        return removed

    def search(self, queries: Embeddings, k: int = 5) -> list[list[IdentityMatch]]:
        """Top-``k`` identities per query (best template per identity), best first.

        Args:
            queries: ``(Q, dim)`` float32 embeddings (normalised here).
            k: Identities to return per query.
        """
        vectors = normalise(np.atleast_2d(queries))
        if vectors.shape[1] != self.dim:
            raise ValueError(f"queries have dimension {vectors.shape[1]}, the index holds {self.dim}")
        if len(self) == 0:
            return [[] for _ in range(len(vectors))]
        depth = min(len(self), k * TEMPLATE_CANDIDATES_PER_IDENTITY)
        scores, ids = self._searchable().search(vectors, depth)
        return [self._fold(row_scores, row_ids, k) for row_scores, row_ids in zip(scores, ids, strict=True)]

    def _searchable(self) -> faiss.Index:
        if self.device == "cpu":
            return self._index
        if self._gpu_copy is None:
            self._gpu_copy = faiss.index_cpu_to_all_gpus(self._index)
        return self._gpu_copy

    def _fold(self, scores: npt.NDArray[np.float32], ids: TemplateIds, k: int) -> list[IdentityMatch]:
        best: dict[str, IdentityMatch] = {}
        for score, template_id in zip(scores, ids, strict=True):
            if template_id < 0:  # FAISS pads missing results with -1
                continue
            identity = self._identity_of.get(int(template_id))
            if identity is not None and identity not in best:  # results come best first
                best[identity] = IdentityMatch(identity, float(score), int(template_id))
                if len(best) == k:
                    break
        return list(best.values())

    def _check(self, template_ids: TemplateIds, identity_ids: Sequence[str], templates: Embeddings) -> None:
        if templates.ndim != 2 or templates.shape[1] != self.dim:
            raise ValueError(f"templates must be (N, {self.dim}), got {templates.shape}")
        if not len(template_ids) == len(identity_ids) == len(templates):
            raise ValueError(
                f"{len(template_ids)} template ids, {len(identity_ids)} identity ids, "
                f"{len(templates)} templates"
            )


def _training_sample(vectors: Embeddings, lists: int) -> Embeddings:
    """A seeded random subset big enough to train ``lists`` IVF centroids."""
    size = min(len(vectors), lists * IVF_TRAINING_POINTS_PER_LIST)
    if size == len(vectors):
        return vectors
    chosen = np.random.default_rng(0).choice(len(vectors), size=size, replace=False)
    return np.ascontiguousarray(vectors[np.sort(chosen)])
