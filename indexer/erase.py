"""Erasing a person from every store, so that deletion means deletion.

The gallery in Redis is the system of record: search indexes in every process follow its
version counter and drop the person on their next query. Kept enrolment photos live on
disk beside it. Later stores of personal data (e.g. corrections, history) join the cascade here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from indexer.gallery import Gallery
from indexer.sources import SourceStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Erasure:
    """What erasing a person removed."""

    name: str
    templates: int
    photos: int


def erase_person(gallery: Gallery, sources: SourceStore, identity_id: str) -> Erasure:
    """Remove a person, their templates and their kept photos.

    Raises:
        GalleryError: Unknown identity (nothing is removed then).
    """
    name = gallery.get_identity(identity_id).name
    templates = gallery.delete_identity(identity_id)
    # After the gallery, so a crash in between never leaves a searchable person; the
    # orphaned photos it can leave are swept by `vigil gallery reembed`.
    photos = sources.erase(identity_id)
    logger.info("erased %s: %d templates, %d kept photos", name, templates, photos)
    return Erasure(name, templates, photos)
