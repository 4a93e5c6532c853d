"""Who is in a photo: faces from the pipeline, matched against the gallery with an open-set decision.

``Identifier`` keeps a FAISS index of the gallery's templates for the pipeline's embedder
version, and rebuilds it when the gallery's version counter moves, so enrolments and
deletions made by other processes are seen without a restart. Its decision thresholds come
from a ``CalibrationSource``, which likewise follows changes to the calibration file. Hard
negatives (``indexer.corrections``) are loaded with the templates and can veto a match.

A gallery is bound to the embedder its templates came from: probes are matched only against
templates of the configured embedder's version. A gallery whose people all have templates of
other embedders only is refused (``GalleryError``, naming the fix) rather than searched and
found empty; one where only some people lack templates for it is searched, with a warning.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from indexer.calibration import CalibrationSource, RuleOverride, Thresholds
from indexer.corrections import Corrections, negatives_by_identity
from indexer.gallery import Gallery
from indexer.head_source import ActiveHead, HeadSource
from indexer.records import TemplateSpaces
from indexer.search import Decision, IndexDevice, TemplateIndex, decide, veto_by_negatives
from vigil.config import Settings
from vigil.config.embedder import backend_of
from vigil.errors import GalleryError
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

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: the name (None: unknown), identity id, cosine similarity and box."""
        score = self.decision.score
        return {
            "name": self.name,
            "identity_id": self.decision.identity_id,
            "score": None if math.isnan(score) else round(score, 4),
            "box_xyxy": [round(float(v), 1) for v in self.face.box_xyxy],
        }


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
        self._embedder_version: str | None = None
        self._head: ActiveHead | None = None
        self._rule: Thresholds | None = None
        self._refusal: str | None = None
        self._warned_without: int = 0

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

    @property
    def people(self) -> int:
        """People in the index (as of the last refresh): the rule in force is fitted to this many."""
        return self._people

    def thresholds(self) -> Thresholds:
        """The decision rule in force now, for the number of people enrolled."""
        return self.calibration.current(self._people)

    def refresh(self) -> bool:
        """Rebuild the index if the gallery, the embedder or the head in force changed since the
        last build; True if so.

        Also works out whether the gallery can be matched with the configured embedder (see
        :meth:`check_gallery`), and warns once when some people have no templates for it.
        """
        head = self.heads.current() if self.heads is not None else None
        version = self.gallery.version()
        backbone = self.pipeline.embedder.version
        if version == self._version and head is self._head and backbone == self._embedder_version:
            return False
        template_ids, identity_ids, embeddings = self.gallery.templates(backbone)
        if head is not None and len(template_ids):
            embeddings = head.apply(embeddings)  # the gallery keeps backbone templates
        dim = head.head.out_dim if head is not None else self.pipeline.embedder.dim
        index = TemplateIndex(dim=dim, device=self.faiss_device)
        if len(template_ids):
            index.build(template_ids, identity_ids, embeddings)
        owners, negatives = Corrections(self.gallery).negatives(backbone)
        if head is not None and owners:
            negatives = head.apply(negatives)
        self._negatives = negatives_by_identity(owners, negatives)
        self._index = index
        self._people = len(set(identity_ids))
        self._names = {identity.identity_id: identity.name for identity in self.gallery.list_identities()}
        self._version = version
        self._embedder_version = backbone
        self._head = head
        self._follow_spaces(self.gallery.templates_by_space(), backbone)
        space = self.space_version
        self.calibration.use_space(space, head.calibration if head is not None else None)
        logger.info("gallery version %d: %d templates indexed in space %s", version, len(template_ids), space)
        return True

    def check_gallery(self) -> None:
        """Refresh, and refuse a gallery that holds templates of other embedders only.

        Call it once the pipeline is loaded: some embedders know their version only then.
        :meth:`name_faces` (and so :meth:`identify`) checks the same on every call;
        :meth:`candidates` does not, so enrolling with a new embedder stays possible.

        Raises:
            GalleryError: People are enrolled, but none has a template of the configured
                embedder's version; the one-line message says how to move the gallery.
        """
        self.refresh()
        if self._refusal is not None:
            raise GalleryError(self._refusal)

    def candidates(self, embeddings: Embeddings) -> list[list[tuple[str, float]]]:
        """Top people as ``(name, cosine similarity)`` for each backbone embedding, best first.

        Unlike :meth:`name_faces`, a gallery of another embedder is not refused: it has no
        candidates (enrolment's look-alike check, while people are re-enrolled).
        """
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

        Raises:
            GalleryError: The gallery holds templates of other embedders only (see
                :meth:`check_gallery`).
        """
        self.check_gallery()
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

    def _follow_spaces(self, spaces: TemplateSpaces, backbone: str) -> None:
        """Decide, for the gallery just loaded, whether to refuse it, and warn once about people
        who cannot be recognised with this embedder."""
        self._refusal = refusal(spaces, backbone)
        without = 0 if self._refusal is not None else len(spaces.without(backbone))
        if without and without != self._warned_without:
            logger.warning(
                "%d of %d enrolled people have no templates for %s (the embedder now configured) and "
                "cannot be recognised until moved: run `vigil gallery reembed`, or re-enrol them "
                "(`vigil people list` shows each person's models)",
                without,
                len(spaces.counts),
                backbone,
            )
        self._warned_without = without

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


def refusal(spaces: TemplateSpaces, embedder_version: str) -> str | None:
    """Why a gallery cannot be matched with ``embedder_version``, or None when it can.

    It cannot when people have templates but none has one of that version: every probe
    would be *unknown*, which looks like a working service. An empty gallery can be matched
    (there is nobody to find yet).

    Returns:
        A one-line message naming the fix, or None.
    """
    if not spaces.counts or spaces.people(embedder_version):
        return None
    stored = spaces.versions()
    return (
        f"the gallery holds templates for {' and '.join(stored)} only, not for {embedder_version} "
        f"(the embedder now configured), so none of its {len(spaces.counts)} people can be matched: "
        "run `vigil gallery reembed` for people whose photos were kept, re-enrol the others, "
        f"or {_setting_back(stored, embedder_version)}"
    )


def _setting_back(stored: list[str], current: str) -> str:
    """The setting that brings back the embedder of the ``stored`` versions."""
    current_backend = backend_of(current)
    backends = sorted(
        {backend for backend in map(backend_of, stored) if backend not in (None, current_backend)}
    )
    if backends:
        return f"set embedder.backend back to {' or '.join(backends)}"
    unflipped = current.removesuffix("+flip")
    if any(version.removesuffix("+flip") == unflipped for version in stored):
        return f"set embedder.flip_average back to {str(not current.endswith('+flip')).lower()}"
    return "set embedder.weights_path back to the weights those templates were made with"
