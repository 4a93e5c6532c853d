"""Who is in a photo: faces from the pipeline, matched against the gallery with an open-set decision.

``Identifier`` keeps a FAISS index of the gallery's templates for the pipeline's embedder
version, and rebuilds it when the gallery's version counter moves, so enrolments and
deletions made by other processes are seen without a restart. Its decision thresholds come
from a ``CalibrationSource``, which likewise follows changes to the calibration file. Hard
negatives (``indexer.corrections``) are loaded with the templates and can veto a match.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from indexer.calibration import CalibrationSource, RuleOverride, Thresholds
from indexer.corrections import Corrections, negatives_by_identity
from indexer.gallery import Gallery
from indexer.head_source import ActiveHead, HeadSource
from indexer.search import Decision, IndexDevice, TemplateIndex, decide, veto_by_negatives
from vigil.config import Settings
from vigil.models.pipeline import Face, FacePipeline
from vigil.typing import Embedding, Embeddings, ImageRGB

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Identification:
    """One face and the answer for it."""

    face: Face
    decision: Decision
    name: str | None

    @property
    def label(self) -> str:
        return self.name if self.name is not None else "unknown"


class Identifier:
    """Identify faces against a gallery.

    Args:
        gallery: The enrolled people.
        pipeline: Finds and embeds faces; its embedder version selects the templates.
        calibration: The decision thresholds (re-read when their file changes).
        top_k: Candidate people kept per face.
        faiss_device: Where searches run (``auto``: a GPU when FAISS has one).
        heads: The promoted embedding head, if any (None: always the backbone's space).

    Example:
        >>> identifier = Identifier.from_settings(gallery, pipeline, settings)
        >>> [result.label for result in identifier.identify(image)]
        ['Barack Obama']
    """

    def __init__(
        self,
        gallery: Gallery,
        pipeline: FacePipeline,
        calibration: CalibrationSource,
        top_k: int = 5,
        faiss_device: IndexDevice = "auto",
        heads: HeadSource | None = None,
    ) -> None:
        self.gallery = gallery
        self.pipeline = pipeline
        self.calibration = calibration
        self.top_k = top_k
        self.faiss_device = faiss_device
        self.heads = heads
        self._index = TemplateIndex(dim=pipeline.embedder.dim, device="cpu")
        self._names: dict[str, str] = {}
        self._people = 0
        self._negatives: dict[str, Embeddings] = {}
        self._version: int | None = None
        self._head: ActiveHead | None = None
        self._rule: Thresholds | None = None

    @classmethod
    def from_settings(cls, gallery: Gallery, pipeline: FacePipeline, settings: Settings) -> Identifier:
        calibration = CalibrationSource(settings.indexer, settings.home, pipeline.embedder.version)
        heads = HeadSource(settings.home, pipeline.embedder.version)
        return cls(
            gallery, pipeline, calibration, settings.indexer.top_k, settings.indexer.faiss_device, heads
        )

    @property
    def space_version(self) -> str:
        """The embedding space searches run in: the backbone's, or the head's in force at the last refresh."""
        return self._head.space_version if self._head is not None else self.pipeline.embedder.version

    def thresholds(self) -> Thresholds:
        """The decision rule in force now, for the number of people enrolled."""
        return self.calibration.current(self._people)

    def refresh(self) -> bool:
        """Rebuild the index if the gallery or the head in force changed since the last build; True if so."""
        head = self.heads.current() if self.heads is not None else None
        version = self.gallery.version()
        if version == self._version and head is self._head:
            return False
        template_ids, identity_ids, embeddings = self.gallery.templates(self.pipeline.embedder.version)
        if head is not None and len(template_ids):
            embeddings = head.apply(embeddings)  # the gallery keeps backbone templates
        dim = head.head.out_dim if head is not None else self.pipeline.embedder.dim
        index = TemplateIndex(dim=dim, device=self.faiss_device)
        if len(template_ids):
            index.build(template_ids, identity_ids, embeddings)
        owners, negatives = Corrections(self.gallery).negatives(self.pipeline.embedder.version)
        if head is not None and owners:
            negatives = head.apply(negatives)
        self._negatives = negatives_by_identity(owners, negatives)
        self._index = index
        self._people = len(set(identity_ids))
        self._names = {identity.identity_id: identity.name for identity in self.gallery.list_identities()}
        self._version = version
        self._head = head
        space = self.space_version
        self.calibration.use_space(space, head.calibration if head is not None else None)
        logger.info("gallery version %d: %d templates indexed in space %s", version, len(template_ids), space)
        return True

    def candidates(self, embeddings: Embeddings) -> list[list[tuple[str, float]]]:
        """Top people as ``(name, cosine similarity)`` for each backbone embedding, best first."""
        self.refresh()
        return [
            [(self._names.get(match.identity_id, match.identity_id), match.score) for match in matches]
            for matches in self._index.search(self._in_space(embeddings), k=self.top_k)
        ]

    def _in_space(self, embeddings: Embeddings) -> Embeddings:
        """Backbone embeddings mapped into the space of the index."""
        return self._head.apply(embeddings) if self._head is not None else embeddings

    def identify(self, image: ImageRGB) -> list[Identification]:
        """Every face in ``image`` with its identity or *unknown*."""
        return self.name_faces(self.pipeline.analyze([image])[0])

    def name_faces(
        self, faces: Sequence[Face], overrides: Sequence[RuleOverride | None] | None = None
    ) -> list[Identification]:
        """The identity (or *unknown*) of faces the pipeline found, searched in one batch.

        The gallery is refreshed once, here, and the calibrated rule is taken for the gallery
        as it is then, so callers that decide with overrides (a worker's cameras) need no
        refresh of their own: :meth:`rule` gives them the rule each face was decided with.

        Args:
            faces: From the pipeline.
            overrides: Per face, an override of the calibrated rule (e.g. its camera's), or
                None for the calibrated rule; None: the calibrated rule for all.
        """
        self.refresh()
        self._rule = self.thresholds()  # after refresh(): for the gallery as it is now
        if not faces:
            return []
        probes = self._in_space(np.stack([face.embedding for face in faces]))
        candidates = self._index.search(probes, k=self.top_k)
        per_face = overrides if overrides is not None else [None] * len(faces)
        results = []
        for face, probe, matches, override in zip(faces, probes, candidates, per_face, strict=True):
            rule = self.rule(override)
            decision = decide(matches, rule.threshold, rule.margin)
            if decision.identity_id in self._negatives:
                negative_score = self._negative_score(decision.identity_id, probe)
                decision = veto_by_negatives(decision, negative_score, rule.margin)
            name = self._names.get(decision.identity_id) if decision.identity_id else None
            results.append(Identification(face, decision, name))
        return results

    def rule(self, override: RuleOverride | None = None) -> Thresholds:
        """The rule the latest :meth:`name_faces` decided with, under ``override`` if given.

        Before any search, the rule in force now (as :meth:`thresholds`).
        """
        calibrated = self._rule if self._rule is not None else self.thresholds()
        return calibrated if override is None else override.over(calibrated)

    def _negative_score(self, identity_id: str, probe: Embedding) -> float:
        """Cosine similarity of a probe (in the index's space) to the person's closest negative."""
        unit = probe / max(float(np.linalg.norm(probe)), 1e-12)
        return float(np.max(self._negatives[identity_id] @ unit))

    @property
    def gallery_version(self) -> int | None:
        """The gallery version the index was built from (None before the first search)."""
        return self._version

    @property
    def indexed_templates(self) -> int:
        return len(self._index)
