"""Gallery export and import (``indexer.backup``) on real Redis servers: round trips of people,
templates, hard negatives, feedback, history and aging opt-ins (on real faces and models for
the corrections), old-format files, and corrupt files that must change nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from indexer.aging import Recognition, age_templates, is_opted_in, set_opted_in
from indexer.backup import export_gallery, import_gallery
from indexer.calibration import CalibrationSource
from indexer.corrections import Corrections, Feedback, Negative, apply_feedback, undo
from indexer.enroll import enroll_person
from indexer.erase import erase_person
from indexer.export_format import EXPORT_FORMAT_VERSION, PersonRecord, person_record
from indexer.gallery import Gallery
from indexer.history import HistoryEntry
from indexer.identify import Identifier
from indexer.records import Identity, Template
from indexer.sources import SourceStore
from tests.conftest import PEOPLE, people_image, require
from tests.indexer.conftest import RedisBackend
from tests.indexer.test_gallery import make_templates
from vigil.config import IndexerConfig
from vigil.config.aging import AgingConfig
from vigil.errors import GalleryError
from vigil.models.pipeline import FacePipeline
from vigil.typing import Embedding

pytestmark = pytest.mark.redis

REPO_ROOT = Path(__file__).resolve().parents[2]
V1_EXPORT = Path(__file__).parent / "assets" / "gallery-v1.jsonl"
"""Written by ``vigil gallery export`` of format version 1 (before negatives, feedback and history
were exported): Ada Lovelace (metadata, two v1 templates, one with a capture time, one v2
template) and Charles Babbage (one v1 template)."""
# A permissive rule (similarity 0.0; SFace scores Biden 0.08 against Obama) under which Biden's face
# is taken for Obama, the only person enrolled: the false match a hard negative corrects (as in
# tests/streamer/test_learning.py).
PERMISSIVE = IndexerConfig(match_threshold=0.0, match_margin=0.03)
NOT_EVENT, IS_EVENT, AGING_EVENT, UNDONE_EVENT = "1" * 32, "2" * 32, "3" * 32, "4" * 32
CAPTURED_AT = "2024-06-01T12:00:00+00:00"


def clear_namespace(gallery: Gallery) -> None:
    keys = list(gallery.client.scan_iter(match=f"{gallery.namespace}:*"))
    if keys:
        gallery.client.delete(*keys)


def face_embedding(pipeline: FacePipeline, name: str) -> Embedding:
    """The backbone embedding of the largest face of a photo in ``people/face_recognition``."""
    faces = pipeline.analyze([people_image(name)])[0]
    return max(faces, key=lambda face: face.size_px).embedding


def names(identifier: Identifier, photo: str) -> list[str | None]:
    return [result.name for result in identifier.identify(people_image(photo))]


def aged(identity_id: str, version: str, embedding: Embedding, event_id: str) -> Recognition:
    """A track confidently recognised as ``identity_id`` (every aging rule passes)."""
    return Recognition(
        identity_id, event_id, version, embedding, score=0.99, margin=0.5, threshold=0.5, face_px=200.0,
        quality=150.0, frames=10, agreeing_frames=10, captured_at=CAPTURED_AT,
    )  # fmt: skip


def template_fields(templates: list[Template]) -> list[tuple[object, ...]]:
    """Everything about templates but their ids."""
    return [
        (t.embedder_version, t.origin, t.source, t.quality, t.captured_at, t.event_id, t.created_at,
         t.embedding.tobytes())
        for t in templates
    ]  # fmt: skip


@pytest.mark.slow
def test_corrections_history_and_aging_survive_export_wipe_import(
    gallery: Gallery, pipeline: FacePipeline, tmp_path: Path
) -> None:
    version = pipeline.embedder.version
    identifier = Identifier(gallery, pipeline, CalibrationSource(PERMISSIVE, tmp_path, version))
    enroll_person(identifier, PERMISSIVE, "Barack Obama", [require(PEOPLE / "obama.jpg")])
    obama = gallery.get_by_name("Barack Obama")
    assert names(identifier, "biden.jpg") == ["Barack Obama"], "the false match to correct"
    # given Biden's face vetoed for Obama, another photo of Obama added by feedback, aging opted in
    # with one aging template kept and one undone
    apply_feedback(gallery, NOT_EVENT, "not", "Barack Obama", version, face_embedding(pipeline, "biden.jpg"))
    apply_feedback(gallery, IS_EVENT, "is", "Barack Obama", version, face_embedding(pipeline, "obama2.jpg"))
    set_opted_in(gallery, obama.identity_id, True)
    aging = AgingConfig(max_similarity=0.999)
    for photo, event_id in [("obama3.jpg", AGING_EVENT), ("obama-480p.jpg", UNDONE_EVENT)]:
        recognition = aged(obama.identity_id, version, face_embedding(pipeline, photo), event_id)
        assert age_templates(gallery, recognition, aging) is not None, f"{photo} must become a template"
    undone = next(e for e in gallery.history(obama.identity_id) if e.event_id == UNDONE_EVENT)
    undo(gallery, obama.identity_id, undone.entry)
    assert names(identifier, "biden.jpg") == [None], "vetoed before the export"
    history = gallery.history(obama.identity_id)
    templates = gallery.identity_templates(obama.identity_id)
    feedback = Corrections(gallery).feedback()
    # when the gallery is exported, everything about Obama erased, and the export imported
    path = tmp_path / "gallery.jsonl"
    exported = export_gallery(gallery, path)
    assert (exported.people, exported.templates, exported.negatives, exported.feedback) == (1, 3, 1, 2)
    erase_person(gallery, SourceStore(tmp_path / "sources"), obama.identity_id)
    assert gallery.list_identities() == [] and Corrections(gallery).feedback() == []
    imported = import_gallery(gallery, path)
    assert imported == exported, "the import restores what the export wrote"
    # then Biden's face is still vetoed, while Obama's other photos are still him
    assert names(identifier, "biden.jpg") == [None], "the hard negative must survive the import"
    assert names(identifier, "obama2.jpg") == ["Barack Obama"]
    # and the templates came back with new ids and every field (aging: its capture time and event)
    restored = gallery.identity_templates(obama.identity_id)
    assert template_fields(restored) == template_fields(templates)
    assert not {t.template_id for t in restored} & {t.template_id for t in templates}, "new template ids"
    assert next(t for t in restored if t.origin == "aging").captured_at == CAPTURED_AT
    # and the feedback log is the same, its items pointing at the new template and negative
    again = Corrections(gallery).feedback()
    assert [(f.feedback_id, f.event_id, f.verdict, f.name, f.created_at) for f in again] == [
        (f.feedback_id, f.event_id, f.verdict, f.name, f.created_at) for f in feedback
    ]
    assert all(np.array_equal(a.embedding, b.embedding) for a, b in zip(again, feedback, strict=True))
    ((negative_owner,), _) = Corrections(gallery).negatives(version)
    (negative,) = Corrections(gallery).identity_negatives(obama.identity_id)
    assert negative_owner == obama.identity_id and negative.event_id == NOT_EVENT
    by_verdict = {f.verdict: f.item_id for f in again}
    assert by_verdict["not"] == negative.negative_id
    assert by_verdict["is"] == next(t.template_id for t in restored if t.origin == "feedback")
    # and the history is the same entries, numbered alike, naming the new ids; aging stays opted in
    restored_history = gallery.history(obama.identity_id)
    assert [(e.entry, e.at, e.action, e.item, e.origin, e.event_id, e.note) for e in restored_history] == [
        (e.entry, e.at, e.action, e.item, e.origin, e.event_id, e.note) for e in history
    ]
    live = {t.template_id for t in restored} | {negative.negative_id}
    assert {e.item_id for e in restored_history if e.action == "added" and e.event_id != UNDONE_EVENT} <= live
    assert is_opted_in(gallery, obama.identity_id)
    # when the negative is undone after the import, then Biden is taken for Obama again
    negative_entry = next(e for e in restored_history if e.item == "negative")
    undo(gallery, obama.identity_id, negative_entry.entry)
    assert names(identifier, "biden.jpg") == ["Barack Obama"], "undo must still work after the import"
    # and the aging template can be undone, while the one undone before the export stays undone
    aging_entry = next(e for e in restored_history if e.event_id == AGING_EVENT)
    undo(gallery, obama.identity_id, aging_entry.entry)
    assert "aging" not in {t.origin for t in gallery.identity_templates(obama.identity_id)}
    with pytest.raises(GalleryError, match="already removed"):
        undo(gallery, obama.identity_id, undone.entry)


def test_export_import_round_trip(backend: RedisBackend, tmp_path: Path) -> None:
    # given a gallery with two people and templates of two versions
    source = backend.gallery()
    alice, _ = source.enroll("alice", make_templates(2) + make_templates(1, "v2", dim=4), {"k": "v"})
    source.enroll("bob", make_templates(1, seed=5))
    export_path = tmp_path / "gallery.jsonl"
    # when exported and imported into an empty gallery
    assert export_gallery(source, export_path).people == 2
    target = Gallery(backend.client(), namespace=backend.namespace + "copy")
    try:
        assert import_gallery(target, export_path).people == 2
        # then identities, metadata and every version's templates are the same
        assert target.list_identities() == source.list_identities()
        for version in ("v1", "v2"):
            _, owners_source, vectors_source = source.templates(version)
            _, owners_target, vectors_target = target.templates(version)
            assert owners_target == owners_source
            assert np.array_equal(vectors_target, vectors_source)
        copied = target.identity_templates(alice.identity_id)
        assert [t.source for t in copied] == [t.source for t in source.identity_templates(alice.identity_id)]
        # and importing the same file again is refused, changing nothing
        version_before = target.version()
        with pytest.raises(GalleryError, match="already"):
            import_gallery(target, export_path)
        assert target.version() == version_before and len(target.list_identities()) == 2
    finally:
        clear_namespace(target)


def test_a_refused_import_writes_nothing_and_keeps_what_was_there(gallery: Gallery, tmp_path: Path) -> None:
    # given an export of alice and bob, and a gallery where another bob already has a negative and feedback
    source = Gallery(gallery.client, namespace=gallery.namespace + "source")
    try:
        source.enroll("alice", make_templates(2))
        source.enroll("bob", make_templates(1, seed=1))
        path = tmp_path / "gallery.jsonl"
        export_gallery(source, path)
    finally:
        clear_namespace(source)
    bob, _ = gallery.enroll("bob", make_templates(1, seed=2))
    apply_feedback(gallery, NOT_EVENT, "not", "bob", "v1", make_templates(1, seed=3)[0].embedding)
    version_before = gallery.version()
    # when the export is imported, then it is refused in one line for bob's name
    with pytest.raises(GalleryError, match="an identity named 'bob' already exists") as raised:
        import_gallery(gallery, path)
    assert "\n" not in str(raised.value)
    # and alice (accepted before bob was checked) was not written, and the other bob kept everything
    assert gallery.version() == version_before and [i.name for i in gallery.list_identities()] == ["bob"]
    assert len(Corrections(gallery).identity_negatives(bob.identity_id)) == 1
    assert [f.name for f in Corrections(gallery).feedback()] == ["bob"]
    assert [e.item for e in gallery.history(bob.identity_id)] == ["template", "negative"]


def test_a_format_1_export_still_imports(gallery: Gallery, tmp_path: Path) -> None:
    # given an export written by a Vigil of format version 1 (identities and templates only)
    # when it is imported
    summary = import_gallery(gallery, V1_EXPORT)
    # then its people and templates are there, as enrolment would have made them
    assert (summary.people, summary.templates, summary.negatives, summary.feedback) == (2, 4, 0, 0)
    ada = gallery.get_by_name("Ada Lovelace")
    assert ada.metadata == {"team": "analytical engine"}
    templates = gallery.identity_templates(ada.identity_id)
    assert [(t.embedder_version, t.source, t.origin) for t in templates] == [
        ("v1", "ada1.jpg", "enrol"),
        ("v1", "ada2.jpg", "enrol"),
        ("v2", "ada1.jpg", "enrol"),
    ]
    assert templates[0].captured_at == "2024-05-01T09:30:00+00:00" and templates[1].captured_at is None
    assert gallery.templates("v1")[2].shape == (3, 8) and gallery.templates("v2")[2].shape == (1, 4)
    # and each template is in the history (undoable), nothing else is kept about them
    history = gallery.history(ada.identity_id)
    assert [(e.action, e.item, e.origin, e.item_id) for e in history] == [
        ("added", "template", "enrol", t.template_id) for t in templates
    ]
    assert Corrections(gallery).feedback() == [] and not is_opted_in(gallery, ada.identity_id)
    # and exporting it again writes the current format
    again = tmp_path / "again.jsonl"
    export_gallery(gallery, again)
    assert json.loads(again.read_text().splitlines()[0])["format_version"] == EXPORT_FORMAT_VERSION == 2


def _record(lines: list[str], change: Callable[[dict[str, object]], object]) -> list[str]:
    """``lines`` with the JSON of line 3 (bob) changed in place by ``change``."""
    record = json.loads(lines[2])
    change(record)
    return [*lines[:2], json.dumps(record), *lines[3:]]


def _first(section: str, **fields: object) -> Callable[[list[str]], list[str]]:
    """Set fields of bob's first record of ``section`` (None: delete the field)."""

    def change(record: dict[str, object]) -> None:
        item = record[section][0]  # type: ignore[index]
        for field, value in fields.items():
            if value is None:
                del item[field]
            else:
                item[field] = value

    return lambda lines: _record(lines, change)


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        # the last line cut off mid-way (a truncated copy)
        (lambda lines: [*lines[:-1], lines[-1][: len(lines[-1]) // 2]], "line 3 is corrupt"),
        # a dim too big for any integer (JSON's Infinity)
        (_first("templates", dim=float("inf")), "line 3 is corrupt"),
        # an identity id that int(..., 16) would take but is not 32 lower-case hex digits
        (lambda lines: _record(lines, lambda r: r.update(identity_id="0x" + "a" * 30)), "bad identity id"),
        # an embedding that is not base64
        (_first("templates", embedding="!!not base64!!"), "line 3 is corrupt \\(template 1: "),
        # an embedding whose size does not match its dim
        (_first("templates", dim=3), "template 1: embedding holds 32 bytes, not dim 3"),
        # a template of an origin Vigil does not know
        (_first("templates", origin="magic"), "template 1: origin 'magic' is not one of enrol"),
        # a negative whose embedding is cut short
        (_first("negatives", dim=9), "line 3 is corrupt \\(negative 1: embedding holds 32 bytes, not dim 9"),
        # a feedback record that is neither --is nor --not
        (_first("feedback", verdict="maybe"), "feedback record 1: verdict 'maybe' is not one of is, not"),
        # a feedback record without its event
        (_first("feedback", event_id=None), "feedback record 1: missing field 'event_id'"),
        # a history entry of an unknown action
        (_first("history", action="moved"), "history entry 1: action 'moved' is not one of added, removed"),
        # a history entry naming no item id
        (_first("history", item_id="seven"), "history entry 1: bad id 'seven'"),
        # a history entry at no time
        (_first("history", at="yesterday"), "history entry 1: at 'yesterday' is not an ISO-8601 time"),
        # the opt-in as text
        (lambda lines: _record(lines, lambda r: r.update(aging_opted_in="yes")), "aging_opted_in is 'yes'"),
        # a version 2 line without its history
        (lambda lines: _record(lines, lambda r: r.pop("history")), "corrupt \\(missing field 'history'"),
        # a file from a future Vigil
        (lambda lines: [lines[0].replace('"format_version": 2', '"format_version": 9'), *lines[1:]], "9"),
        # not an export at all
        (lambda lines: ["{}", *lines[1:]], "not a Vigil gallery export"),
    ],
    ids=[
        "truncated", "infinite-dim", "hex-prefix", "base64", "dim", "origin", "negative-dim", "verdict",
        "feedback-event",
        "history-action", "history-id", "history-time", "opt-in", "no-history", "format-version", "no-header",
    ],
)  # fmt: skip
def test_corrupt_import_leaves_gallery_unchanged(
    gallery: Gallery, tmp_path: Path, corrupt: Callable[[list[str]], list[str]], message: str
) -> None:
    # given a valid export of two people (bob with a negative and feedback), who are then erased
    first, _ = gallery.enroll("alice", make_templates(2))
    second, _ = gallery.enroll("bob", make_templates(2, seed=1))
    apply_feedback(gallery, NOT_EVENT, "not", "bob", "v1", make_templates(1, seed=3)[0].embedding)
    path = tmp_path / "gallery.jsonl"
    export_gallery(gallery, path)
    for person in (first, second):
        erase_person(gallery, SourceStore(tmp_path / "sources"), person.identity_id)
    path.write_text("\n".join(corrupt(path.read_text().splitlines())) + "\n")
    version_before = gallery.version()
    # when the corrupt file is imported
    with pytest.raises(GalleryError, match=message) as raised:
        import_gallery(gallery, path)
    # then the message is one line and nothing was written (not even the valid first person)
    assert "\n" not in str(raised.value)
    assert gallery.version() == version_before
    assert gallery.list_identities() == [] and gallery.template_count() == 0
    assert Corrections(gallery).feedback() == [] and Corrections(gallery).negatives("v1")[0] == []


def test_the_docs_describe_every_field_of_the_format() -> None:
    # given one exported person with a record in every section
    owner, stamp, vector = "0" * 32, "2026-01-01T00:00:00+00:00", np.ones(2, np.float32)
    person = PersonRecord(
        Identity(owner, "ada", {}, stamp, stamp),
        [Template(1, owner, "v1", vector, None, "ada.jpg", 0.5, stamp)],
        [Negative(2, owner, "v1", vector, None, stamp)],
        [Feedback("f" * 32, "e" * 32, "not", owner, "ada", "v1", vector, stamp, 2)],
        [HistoryEntry(1, stamp, "added", "template", 1, "enrol")],
        False,
    )
    record = person_record(person)
    docs = (REPO_ROOT / "docs" / "gallery-export.md").read_text(encoding="utf-8")
    # then docs/gallery-export.md has a table row for each field: the person's before the first
    # section heading, each section's under its heading ("### `templates`")
    chunks = re.split(r"^### `([a-z_]+)`", docs, flags=re.MULTILINE)
    tables = {"": chunks[0], **dict(zip(chunks[1::2], chunks[2::2], strict=True))}
    expected = {"": set(record)} | {
        section: set(items[0]) for section, items in record.items() if isinstance(items, list)
    }
    for section, fields in expected.items():
        documented = set(re.findall(r"^\| `([a-z_]+)` \|", tables.get(section, ""), flags=re.MULTILINE))
        assert fields <= documented, (
            f"section {section or 'person'}: undocumented {sorted(fields - documented)}"
        )
