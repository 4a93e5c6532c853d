"""Re-embedding the gallery for a new embedder, from kept enrolment photos.

Templates of different embedders live in different spaces and are never compared, so a
new embedder starts with no templates. When enrolment photos were kept (opt-in,
``indexer.keep_sources``), ``reembed_gallery`` embeds each one again with the current
embedder and adds the result as a new template; the old templates stay (a rollback to the
old embedder keeps working). Running it twice adds nothing the second time. People left
without a template for the current embedder (no photo of theirs was kept, or none still
gives a usable face) are listed by name, for re-enrolment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from indexer.enroll import usable_face
from indexer.gallery import Gallery
from indexer.records import NewTemplate
from indexer.sources import SourceStore
from vigil.config.indexer import IndexerConfig
from vigil.errors import GalleryError, VigilError
from vigil.models.pipeline import FacePipeline

logger = logging.getLogger(__name__)


@dataclass
class ReembedReport:
    """What a re-embedding did.

    Attributes:
        added: New templates for the current embedder.
        up_to_date: Old templates that already had a current one from the same photo.
        without_photo: Old templates whose photo was not kept.
        failed: ``(photo, reason)`` for kept photos that no longer give a usable face.
        orphans_removed: Kept photos of people no longer in the gallery, now deleted.
        to_reenrol: Names of the people who could not be moved: they have templates, but
            still none for the current embedder (re-enrol them), sorted.
    """

    added: int = 0
    up_to_date: int = 0
    without_photo: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    orphans_removed: int = 0
    to_reenrol: list[str] = field(default_factory=list)


def reembed_gallery(
    gallery: Gallery,
    sources: SourceStore,
    pipeline: FacePipeline,
    config: IndexerConfig,
    on_person_done: Callable[[], object] | None = None,
) -> ReembedReport:
    """Add a current-embedder template for every old template whose photo was kept.

    Also deletes kept photos of people no longer in the gallery (left by a crash during
    an erasure), and names the people it could not move (``ReembedReport.to_reenrol``).
    ``on_person_done`` is called after each person, e.g. to advance a progress bar.
    """
    version = pipeline.embedder.version
    report = ReembedReport()
    identities = gallery.list_identities()
    for identity in identities:
        templates = gallery.identity_templates(identity.identity_id)
        current_sources = {t.source for t in templates if t.embedder_version == version}
        moved = bool(current_sources)
        deleted = False
        for template in templates:
            if template.embedder_version == version:
                continue
            if template.source in current_sources:
                report.up_to_date += 1
                continue
            photo = sources.find(identity.identity_id, template.template_id)
            if photo is None:
                report.without_photo += 1
                continue
            try:
                face, quality, _ = usable_face(pipeline, config, photo)
            except VigilError as exc:
                report.failed.append((photo, str(exc)))
                continue
            new = NewTemplate(version, face.embedding, template.source, quality, template.captured_at)
            try:
                [template_id] = gallery.add_templates(identity.identity_id, [new])
            except GalleryError as exc:
                if _still_enrolled(gallery, identity.identity_id):
                    report.failed.append((photo, str(exc)))  # e.g. an embedding the gallery refuses
                    continue
                deleted = True  # the person was deleted meanwhile
                break
            sources.keep(identity.identity_id, template_id, photo)
            current_sources.add(template.source)
            moved = True
            report.added += 1
        if templates and not moved and not deleted:
            report.to_reenrol.append(identity.name)
        if on_person_done is not None:
            on_person_done()
    report.orphans_removed = _remove_orphans(gallery, sources)
    # Counts only: the report names people, and logs outlive their erasure.
    logger.info(
        "re-embedded the gallery for %s: %d added, %d up to date, %d without photo, %d failed, "
        "%d to re-enrol",
        version,
        report.added,
        report.up_to_date,
        report.without_photo,
        len(report.failed),
        len(report.to_reenrol),
    )
    return report


def _remove_orphans(gallery: Gallery, sources: SourceStore) -> int:
    removed = 0
    for folder in sorted(sources.root.iterdir()) if sources.root.is_dir() else []:
        if not folder.is_dir():
            continue
        try:
            gallery.get_identity(folder.name)  # asked now: someone may have enrolled meanwhile
        except GalleryError:
            removed += sources.erase(folder.name)
    return removed


def _still_enrolled(gallery: Gallery, identity_id: str) -> bool:
    try:
        gallery.get_identity(identity_id)
    except GalleryError:
        return False
    return True
