"""The gallery's portable backup (``vigil gallery export`` / ``import``): every person with
what the stores beside the gallery keep about them, so a backup, or a move to another Redis,
keeps the corrections and stays undoable. The file format is ``indexer.export_format``.

Template and negative ids are gallery-wide counters, so an import gives them new ids; the
ids in a file only tie its history entries and feedback records to its templates and
negatives, and are mapped to the new ones (in the same order, which aging relies on to find
the oldest). Identity ids are kept.

The whole file is validated before anything is written, and an import is one transaction
(``Gallery.transaction``), so a corrupt backup never half-imports and a refused one
changes nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from redis.client import Pipeline

from indexer.aging import is_opted_in, queue_opt_in
from indexer.corrections import Corrections, Feedback
from indexer.export_format import PersonRecord, export_header, person_record, read_export
from indexer.gallery import Gallery
from indexer.history import HistoryItem, queue_entry
from indexer.records import NewTemplate, Template
from vigil.errors import GalleryError
from vigil.files import write_text_atomically

logger = logging.getLogger(__name__)

# The set of opted-in identity ids that ``indexer.aging`` reads (``is_opted_in``).


@dataclass(frozen=True)
class BackupSummary:
    """How much an export wrote or an import restored."""

    people: int
    templates: int
    negatives: int
    feedback: int
    history_entries: int

    def describe(self) -> str:
        return (
            f"{self.people} people ({self.templates} template(s), {self.negatives} negative(s), "
            f"{self.feedback} feedback record(s), {self.history_entries} history entries)"
        )


def export_gallery(gallery: Gallery, path: Path) -> BackupSummary:
    """Write every person, with their templates, negatives, feedback, history and aging opt-in.

    The file is written to a temporary name and renamed, so a reader never sees half of it.
    People deleted while the export runs are left out.
    """
    corrections = Corrections(gallery)
    feedback_of: dict[str, list[Feedback]] = {}
    for item in corrections.feedback():
        feedback_of.setdefault(item.identity_id, []).append(item)
    people: list[PersonRecord] = []
    for identity in gallery.list_identities():
        try:
            templates = gallery.identity_templates(identity.identity_id)
            history = gallery.history(identity.identity_id)
        except GalleryError:  # deleted while exporting
            continue
        people.append(
            PersonRecord(
                identity,
                templates,
                corrections.identity_negatives(identity.identity_id),
                feedback_of.get(identity.identity_id, []),
                history,
                is_opted_in(gallery, identity.identity_id),
            )
        )
    lines = [export_header(), *(json.dumps(person_record(person)) for person in people)]
    write_text_atomically(path, "\n".join(lines) + "\n")
    summary = _summary(people)
    logger.info("exported %s to %s", summary.describe(), path)
    return summary


def import_gallery(gallery: Gallery, path: Path) -> BackupSummary:
    """Add the people of an export file, with everything kept about them, in one transaction.

    Identity ids, names and metadata are kept; templates and negatives get new ids, and the
    history and feedback follow them. Everything is validated before anything is written.

    Raises:
        GalleryError: The file is unreadable or corrupt, or a person's id or name is already
            in the gallery; the gallery is then unchanged.
    """
    people = read_export(path)
    corrections = Corrections(gallery)
    template_ids = [_item_ids(person, "template") for person in people]
    negative_ids = [_item_ids(person, "negative") for person in people]
    new_template_ids = iter(gallery.allocate_template_ids(sum(len(ids) for ids in template_ids)))
    new_negative_ids = iter(corrections.allocate_negative_ids(sum(len(ids) for ids in negative_ids)))
    restored = [
        renumbered(
            person,
            {old: next(new_template_ids) for old in old_templates},
            {old: next(new_negative_ids) for old in old_negatives},
        )
        for person, old_templates, old_negatives in zip(people, template_ids, negative_ids, strict=True)
    ]

    def work(pipe: Pipeline) -> None:
        for person in restored:
            identity = person.identity
            if pipe.exists(gallery.identity_key(identity.identity_id)):
                raise GalleryError(f"{path}: identity id {identity.identity_id} is already in the gallery")
            if pipe.hexists(gallery.key("names"), identity.name):
                raise GalleryError(f"{path}: an identity named {identity.name!r} already exists")
        try:  # a template of another length than the gallery's would break every search of its model
            gallery.check_dimensions(
                pipe, [_new_template(t) for person in restored for t in person.templates]
            )
        except GalleryError as exc:
            raise GalleryError(f"{path}: {exc}; nothing was imported") from None
        pipe.multi()
        for person in restored:
            _queue_person(pipe, gallery, corrections, person)

    watched = [gallery.key("names")] + [gallery.identity_key(p.identity.identity_id) for p in restored]
    gallery.transaction(work, *watched)
    summary = _summary(restored)
    logger.info("imported %s from %s", summary.describe(), path)
    return summary


def renumbered(
    person: PersonRecord, template_ids: Mapping[int, int], negative_ids: Mapping[int, int]
) -> PersonRecord:
    """``person`` with the new template and negative ids, in their templates, negatives,
    history entries and feedback records.

    Args:
        template_ids: Old → new id of every template id the record names (see ``_item_ids``).
        negative_ids: The same for negatives.
    """
    ids = {"template": template_ids, "negative": negative_ids}
    return replace(
        person,
        templates=[replace(t, template_id=template_ids[t.template_id]) for t in person.templates],
        negatives=[replace(n, negative_id=negative_ids[n.negative_id]) for n in person.negatives],
        feedback=[replace(f, item_id=ids[_feedback_item(f)][f.item_id]) for f in person.feedback],
        history=None
        if person.history is None
        else [replace(e, item_id=ids[e.item][e.item_id]) for e in person.history],
    )


# -- private ----------------------------------------------------------------------------------


def _queue_person(pipe: Pipeline, gallery: Gallery, corrections: Corrections, person: PersonRecord) -> None:
    """Queue the writes that restore one (renumbered) person, after ``multi()``."""
    identity_id = person.identity.identity_id
    gallery.queue_identity(pipe, person.identity)
    for template in person.templates:
        new = _new_template(template)
        gallery.queue_template(
            pipe,
            template.template_id,
            identity_id,
            new,
            template.embedding,
            template.created_at,
            history=person.history is None,
        )
    for negative in person.negatives:
        corrections.queue_negative(pipe, negative)
    for item in person.feedback:
        corrections.queue_feedback(pipe, item)
    for entry in person.history or []:
        queue_entry(pipe, gallery.history_key(identity_id), entry)
    if person.aging_opted_in:
        queue_opt_in(pipe, gallery, identity_id)


def _new_template(template: Template) -> NewTemplate:
    return NewTemplate(
        template.embedder_version,
        template.embedding,
        template.source,
        template.quality,
        template.captured_at,
        template.origin,
        template.event_id,
    )


def _item_ids(person: PersonRecord, item: HistoryItem) -> list[int]:
    """Every template (or negative) id the record names, ascending: its own, and those its
    history and feedback name (items removed before the export get a fresh id too, so an
    entry about them can never be taken for a new item)."""
    if item == "template":
        ids = {template.template_id for template in person.templates}
    else:
        ids = {negative.negative_id for negative in person.negatives}
    ids |= {entry.item_id for entry in person.history or [] if entry.item == item}
    ids |= {f.item_id for f in person.feedback if _feedback_item(f) == item}
    return sorted(ids)


def _feedback_item(feedback: Feedback) -> HistoryItem:
    """What a correction created: a template (``is``) or a negative (``not``)."""
    return "template" if feedback.verdict == "is" else "negative"


def _summary(people: list[PersonRecord]) -> BackupSummary:
    return BackupSummary(
        people=len(people),
        templates=sum(len(person.templates) for person in people),
        negatives=sum(len(person.negatives) for person in people),
        feedback=sum(len(person.feedback) for person in people),
        history_entries=sum(len(person.history or []) for person in people),
    )
