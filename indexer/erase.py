"""Erasing a person from every store, so that deletion means deletion.

The gallery in Redis is the system of record: search indexes in every process follow its
version counter and drop the person on their next query. Beside it are stores about the
person: hard negatives and feedback (``indexer.corrections``), unknown clusters enrolled
as them (``indexer.unknowns``; with whatever an interrupted enrolment left of their tracks,
face images included), their aging opt-in (``indexer.aging``), and kept
enrolment photos on disk. Their history and templates go with the identity itself.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from indexer.aging import forget_opt_in
from indexer.corrections import Corrections
from indexer.gallery import Gallery
from indexer.sources import SourceStore
from indexer.unknowns import UnknownStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Erasure:
    """What erasing a person removed."""

    name: str
    templates: int
    photos: int
    negatives: int = 0
    feedback: int = 0
    clusters: int = 0


def erase_person(gallery: Gallery, sources: SourceStore, identity_id: str) -> Erasure:
    """Remove a person, their templates, history, negatives, feedback, clusters and kept photos.

    Raises:
        GalleryError: Unknown identity (nothing is removed then).
    """
    name = gallery.get_identity(identity_id).name
    # The stores about the person go first: a crash in between leaves the person enrolled,
    # so running the erasure again finishes it (the other way round would orphan them).
    negatives, feedback = Corrections(gallery).erase(identity_id)
    clusters = UnknownStore(gallery, retention_s=math.inf).erase(identity_id)  # retention: writes only
    forget_opt_in(gallery, identity_id)
    templates = gallery.delete_identity(identity_id)
    # After the gallery, so a crash in between never leaves a searchable person; the
    # orphaned photos it can leave are swept by `vigil gallery reembed`.
    photos = sources.erase(identity_id)
    logger.info(
        "erased %s: %d templates, %d negatives, %d feedback, %d clusters, %d kept photos",
        name, templates, negatives, feedback, clusters, photos,
    )  # fmt: skip
    return Erasure(name, templates, photos, negatives, feedback, clusters)
