"""Who is in a photo: faces from the pipeline, matched against the gallery with an open-set decision.

``Identifier`` keeps a FAISS index of the gallery's templates for the pipeline's embedder
version, and rebuilds it when the gallery's version counter moves, so enrolments and
deletions made by other processes are seen without a restart. Its decision thresholds come
from a ``CalibrationSource``, which likewise follows changes to the calibration file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from indexer.calibration import CalibrationSource, Thresholds
from indexer.gallery import Gallery
from indexer.search import Decision, IndexDevice, TemplateIndex, decide
from vigil.config import Settings
from vigil.models.pipeline import Face, FacePipeline
from vigil.typing import Embeddings, ImageRGB

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
    ) -> None:
        self.gallery = gallery
        self.pipeline = pipeline
        self.calibration = calibration
        self.top_k = top_k
        self.faiss_device = faiss_device
        self._index = TemplateIndex(dim=pipeline.embedder.dim, device="cpu")
        self._names: dict[str, str] = {}
        self._people = 0
        self._version: int | None = None

    @classmethod
    def from_settings(cls, gallery: Gallery, pipeline: FacePipeline, settings: Settings) -> Identifier:
        calibration = CalibrationSource(settings.indexer, settings.home, pipeline.embedder.version)
        return cls(gallery, pipeline, calibration, settings.indexer.top_k, settings.indexer.faiss_device)

    def thresholds(self) -> Thresholds:
        """The decision rule in force now, for the number of people enrolled."""
        return self.calibration.current(self._people)

    def refresh(self) -> bool:
        """Rebuild the index if the gallery changed since the last build; True if it did."""
        version = self.gallery.version()
        if version == self._version:
            return False
        template_ids, identity_ids, embeddings = self.gallery.templates(self.pipeline.embedder.version)
        index = TemplateIndex(dim=self.pipeline.embedder.dim, device=self.faiss_device)
        if len(template_ids):
            index.build(template_ids, identity_ids, embeddings)
        self._index = index
        self._people = len(set(identity_ids))
        self._names = {identity.identity_id: identity.name for identity in self.gallery.list_identities()}
        self._version = version
        logger.info("gallery version %d: %d templates indexed", version, len(template_ids))
        return True

    def candidates(self, embeddings: Embeddings) -> list[list[tuple[str, float]]]:
        """Top people as ``(name, cosine similarity)`` for each embedding, best first."""
        self.refresh()
        return [
            [(self._names.get(match.identity_id, match.identity_id), match.score) for match in matches]
            for matches in self._index.search(embeddings, k=self.top_k)
        ]

    def identify(self, image: ImageRGB) -> list[Identification]:
        """Every face in ``image`` with its identity or *unknown*."""
        return self.name_faces(self.pipeline.analyze([image])[0])

    def name_faces(self, faces: Sequence[Face]) -> list[Identification]:
        """The identity (or *unknown*) of faces the pipeline found, searched in one batch."""
        self.refresh()
        if not faces:
            return []
        rule = self.thresholds()  # after refresh(): for the gallery as it is now
        candidates = self._index.search(np.stack([face.embedding for face in faces]), k=self.top_k)
        results = []
        for face, matches in zip(faces, candidates, strict=True):
            decision = decide(matches, rule.threshold, rule.margin)
            name = self._names.get(decision.identity_id) if decision.identity_id else None
            results.append(Identification(face, decision, name))
        return results

    @property
    def gallery_version(self) -> int | None:
        """The gallery version the index was built from (None before the first search)."""
        return self._version

    @property
    def indexed_templates(self) -> int:
        return len(self._index)
