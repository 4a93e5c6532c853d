"""The gallery's export file format (``vigil gallery export`` / ``import``), described for
users in ``docs/gallery-export.md``.

A JSON-lines file: the first line is a header (``format``, ``format_version``,
``exported_at``); each further line is one person: the identity, its templates (embeddings
as base64 float32, little-endian) and, since format version 2, everything else kept about
them: hard negatives, the feedback about them, their history and their aging opt-in.
Version 1 files (identities and templates only) are still read.

Reading validates the whole file and says which line, and which record within it, is
corrupt; nothing here touches Redis (``indexer.backup`` writes and reads the gallery).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, get_args

import numpy as np

from indexer.corrections import Feedback, Negative, Verdict
from indexer.history import HistoryAction, HistoryEntry, HistoryItem, HistoryOrigin
from indexer.records import (
    Identity,
    NewTemplate,
    Template,
    TemplateOrigin,
    check_embedding,
    check_metadata,
    check_name,
    check_template,
    now,
)
from vigil.errors import GalleryError
from vigil.typing import Embedding

EXPORT_FORMAT = "vigil-gallery"
EXPORT_FORMAT_VERSION = 2
READABLE_FORMAT_VERSIONS = (1, 2)

_T = TypeVar("_T")
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class PersonRecord:
    """One person of an export file: what the gallery and the stores beside it keep about them.

    Attributes:
        identity: Id, name and metadata (the id is kept on import).
        templates: By id; the ids are the exporting gallery's (position numbers from 1 in a
            version 1 file).
        negatives: Hard negatives, by id.
        feedback: The corrections naming the person, oldest first.
        history: Their history, oldest first; None for a version 1 file, which kept none
            (an import then records each template as added, as enrolment does).
        aging_opted_in: Whether they opted in to template aging.
    """

    identity: Identity
    templates: list[Template]
    negatives: list[Negative]
    feedback: list[Feedback]
    history: list[HistoryEntry] | None
    aging_opted_in: bool


def export_header() -> str:
    """The first line of an export file."""
    return json.dumps(
        {"format": EXPORT_FORMAT, "format_version": EXPORT_FORMAT_VERSION, "exported_at": now()}
    )


def person_record(person: PersonRecord) -> dict[str, object]:
    """One line of an export file (format version 2), as JSON-ready values."""
    identity = person.identity
    return {
        "identity_id": identity.identity_id,
        "name": identity.name,
        "metadata": identity.metadata,
        "created_at": identity.created_at,
        "updated_at": identity.updated_at,
        "aging_opted_in": person.aging_opted_in,
        "templates": [
            {
                "template_id": template.template_id,
                "embedder_version": template.embedder_version,
                "dim": template.dim,
                "embedding": _encode(template.embedding),
                "captured_at": template.captured_at,
                "source": template.source,
                "quality": template.quality,
                "created_at": template.created_at,
                "origin": template.origin,
                "event_id": template.event_id,
            }
            for template in person.templates
        ],
        "negatives": [
            {
                "negative_id": negative.negative_id,
                "embedder_version": negative.embedder_version,
                "dim": int(negative.embedding.shape[0]),
                "embedding": _encode(negative.embedding),
                "event_id": negative.event_id,
                "created_at": negative.created_at,
            }
            for negative in person.negatives
        ],
        "feedback": [
            {
                "feedback_id": item.feedback_id,
                "event_id": item.event_id,
                "verdict": item.verdict,
                "name": item.name,
                "embedder_version": item.embedder_version,
                "dim": int(item.embedding.shape[0]),
                "embedding": _encode(item.embedding),
                "created_at": item.created_at,
                "item_id": item.item_id,
            }
            for item in person.feedback
        ],
        "history": [
            {
                "at": entry.at,
                "action": entry.action,
                "item": entry.item,
                "item_id": entry.item_id,
                "origin": entry.origin,
                "event_id": entry.event_id,
                "note": entry.note,
            }
            for entry in person.history or []
        ],
    }


def read_export(path: Path) -> list[PersonRecord]:
    """Parse and validate a whole export file (format version 1 or 2); nothing is written here.

    Raises:
        GalleryError: The file is unreadable, not an export, of another format version, or
            a line is corrupt (the message names the line, and the record within it).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GalleryError(f"cannot read gallery export {path}: {exc.strerror}; check the path") from None
    except UnicodeDecodeError:
        raise GalleryError(f"gallery export {path} is not UTF-8 text; it is corrupt") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise GalleryError(f"gallery export {path} is empty")
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError:
        raise GalleryError(f"gallery export {path}: line 1 is not JSON; the file is corrupt") from None
    if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
        raise GalleryError(f"{path} is not a Vigil gallery export (no {EXPORT_FORMAT!r} header)")
    version = header.get("format_version")
    if isinstance(version, bool) or version not in READABLE_FORMAT_VERSIONS:
        raise GalleryError(
            f"gallery export {path} has format version {version!r}; "
            f"this Vigil reads versions {', '.join(map(str, READABLE_FORMAT_VERSIONS))}"
        )
    people: list[PersonRecord] = []
    seen_ids: set[str] = set()
    seen_names: set[str] = set()
    seen_feedback: set[str] = set()
    dims: dict[str, tuple[int, int]] = {}  # embedder version → (dimension, line it was first seen on)
    for line_number, line in enumerate(lines[1:], start=2):
        try:
            person = _parse_person(json.loads(line), version)
            _check_dimensions(person, line_number, dims)
        except (
            json.JSONDecodeError,
            KeyError,
            TypeError,
            ValueError,
            OverflowError,
            binascii.Error,
            GalleryError,
        ) as exc:
            raise GalleryError(
                f"gallery export {path}: line {line_number} is corrupt ({_reason(exc)})"
            ) from None
        identity = person.identity
        if identity.identity_id in seen_ids or identity.name in seen_names:
            raise GalleryError(f"gallery export {path}: line {line_number} repeats an identity id or name")
        feedback_ids = {item.feedback_id for item in person.feedback}
        if feedback_ids & seen_feedback:
            raise GalleryError(f"gallery export {path}: line {line_number} repeats a feedback id")
        seen_ids.add(identity.identity_id)
        seen_names.add(identity.name)
        seen_feedback |= feedback_ids
        people.append(person)
    return people


# -- private ----------------------------------------------------------------------------------


def _parse_person(record: Any, version: int) -> PersonRecord:
    """One line's person; version 1 lines hold the identity and its templates only."""
    if not isinstance(record, dict):
        raise ValueError("not an object")
    identity_id = record["identity_id"]
    if not isinstance(identity_id, str) or len(identity_id) != 32 or not _is_hex(identity_id):
        raise ValueError(f"bad identity id {identity_id!r}")
    name = record["name"]
    check_name(name)
    metadata = record["metadata"]
    if not isinstance(metadata, dict):
        raise ValueError("metadata is not an object")
    check_metadata(metadata)
    identity = Identity(
        identity_id,
        name,
        metadata,
        _timestamp(record["created_at"], "created_at"),
        _timestamp(record["updated_at"], "updated_at"),
    )
    if version == 1:
        templates = _section(
            record, "templates", "template", lambda item, number: _template(item, identity_id, 1, number)
        )
        return PersonRecord(identity, templates, [], [], None, False)
    templates = _section(
        record, "templates", "template", lambda item, number: _template(item, identity_id, 2, number)
    )
    negatives = _section(record, "negatives", "negative", lambda item, _: _negative(item, identity_id))
    feedback = _section(record, "feedback", "feedback record", lambda item, _: _feedback(item, identity_id))
    history = _section(record, "history", "history entry", lambda item, _: _history_entry(item))
    _unique([t.template_id for t in templates], "template id")
    _unique([n.negative_id for n in negatives], "negative id")
    opted_in = record["aging_opted_in"]
    if not isinstance(opted_in, bool):
        raise ValueError(f"aging_opted_in is {opted_in!r}, not true or false")
    return PersonRecord(identity, templates, negatives, feedback, history, opted_in)


def _check_dimensions(person: PersonRecord, line_number: int, dims: dict[str, tuple[int, int]]) -> None:
    """Every embedding of one model in the file has one length (else a search of it would fail)."""
    embeddings = [
        *(("template", t.embedder_version, t.embedding) for t in person.templates),
        *(("negative", n.embedder_version, n.embedding) for n in person.negatives),
        *(("feedback record", f.embedder_version, f.embedding) for f in person.feedback),
    ]
    for what, version, embedding in embeddings:
        dim = int(embedding.shape[0])
        first_dim, first_line = dims.setdefault(version, (dim, line_number))
        if dim != first_dim:
            raise ValueError(
                f"a {what} embedding has dimension {dim}, but {version} embeddings on line {first_line} "
                f"have {first_dim} values"
            )


def _section(
    record: dict[str, Any], section: str, what: str, parse: Callable[[dict[str, Any], int], _T]
) -> list[_T]:
    """Parse each record of a list field, naming the failing one (``history entry 2: ...``).

    Args:
        section: The field.
        what: What one record of it is called in messages.
        parse: Parses one record, given its position (from 1).
    """
    items = record[section]
    if not isinstance(items, list):
        raise ValueError(f"{section} is not a list")
    parsed: list[_T] = []
    for number, item in enumerate(items, start=1):
        try:
            if not isinstance(item, dict):
                raise ValueError("not an object")
            parsed.append(parse(item, number))
        except (KeyError, TypeError, ValueError, OverflowError, binascii.Error, GalleryError) as exc:
            raise ValueError(f"{what} {number}: {_reason(exc)}") from None
    return parsed


def _template(item: dict[str, Any], identity_id: str, version: int, position: int) -> Template:
    """A template; a version 1 record has no id, origin or event: its position is its id."""
    embedding = _decode(item)
    if version == 1:
        template_id, origin, event_id = position, "enrol", None
    else:
        template_id, origin, event_id = _item_id(item["template_id"]), item["origin"], item["event_id"]
    template = NewTemplate(
        embedder_version=str(item["embedder_version"]),
        embedding=embedding,
        source=str(item["source"]),
        quality=float(item["quality"]),
        captured_at=_optional_timestamp(item["captured_at"], "captured_at"),
        origin=_choice(origin, get_args(TemplateOrigin), "origin"),
        event_id=_optional_text(event_id, "event_id"),
    )
    check_template(template)
    return Template(
        template_id=template_id,
        identity_id=identity_id,
        embedder_version=template.embedder_version,
        embedding=embedding,
        captured_at=template.captured_at,
        source=template.source,
        quality=template.quality,
        created_at=_timestamp(item["created_at"], "created_at"),
        origin=template.origin,
        event_id=template.event_id,
    )


def _negative(item: dict[str, Any], identity_id: str) -> Negative:
    version = _embedder_version(item["embedder_version"])
    return Negative(
        negative_id=_item_id(item["negative_id"]),
        identity_id=identity_id,
        embedder_version=version,
        embedding=check_embedding(version, _decode(item)),
        event_id=_optional_text(item["event_id"], "event_id"),
        created_at=_timestamp(item["created_at"], "created_at"),
    )


def _feedback(item: dict[str, Any], identity_id: str) -> Feedback:
    feedback_id = item["feedback_id"]
    if not isinstance(feedback_id, str) or len(feedback_id) != 32 or not _is_hex(feedback_id):
        raise ValueError(f"bad feedback id {feedback_id!r}")
    name = item["name"]
    check_name(name)
    version = _embedder_version(item["embedder_version"])
    return Feedback(
        feedback_id=feedback_id,
        event_id=_text(item["event_id"], "event_id"),
        verdict=_choice(item["verdict"], get_args(Verdict), "verdict"),
        identity_id=identity_id,
        name=name,
        embedder_version=version,
        embedding=check_embedding(version, _decode(item)),
        created_at=_timestamp(item["created_at"], "created_at"),
        item_id=_item_id(item["item_id"]),
    )


def _history_entry(item: dict[str, Any]) -> HistoryEntry:
    return HistoryEntry(
        entry=0,  # the list position numbers entries
        at=_timestamp(item["at"], "at"),
        action=_choice(item["action"], get_args(HistoryAction), "action"),
        item=_choice(item["item"], get_args(HistoryItem), "item"),
        item_id=_item_id(item["item_id"]),
        origin=_choice(item["origin"], get_args(HistoryOrigin), "origin"),
        event_id=_optional_text(item["event_id"], "event_id"),
        note=_text(item["note"], "note"),
    )


def _encode(embedding: Embedding) -> str:
    return base64.b64encode(embedding.astype("<f4").tobytes()).decode("ascii")


def _decode(item: dict[str, Any]) -> Embedding:
    """The record's ``embedding`` (base64 float32), checked against its ``dim``; finite."""
    raw = base64.b64decode(item["embedding"], validate=True)
    if len(raw) % 4 or len(raw) // 4 != int(item["dim"]):
        raise ValueError(f"embedding holds {len(raw)} bytes, not dim {item['dim']} × 4")
    embedding = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if embedding.shape[0] == 0 or not np.isfinite(embedding).all():
        raise ValueError("embedding is empty or holds NaN or infinity")
    return embedding


def _embedder_version(value: object) -> str:
    if not isinstance(value, str) or not value or ":" in value:
        raise ValueError(f"bad embedder version {value!r}")
    return value


def _item_id(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"bad id {value!r}: not a non-negative integer")
    return value


def _choice(value: object, options: tuple[_T, ...], field: str) -> _T:
    for option in options:
        if value == option:
            return option
    raise ValueError(f"{field} {value!r} is not one of {', '.join(map(str, options))}")


def _text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{field} {value!r} is not text")
    return value


def _optional_text(value: object, field: str) -> str | None:
    return None if value is None else _text(value, field)


def _timestamp(value: object, field: str) -> str:
    """An ISO-8601 time, as text."""
    stamp = _text(value, field)
    try:
        datetime.fromisoformat(stamp)
    except ValueError:
        raise ValueError(f"{field} {stamp!r} is not an ISO-8601 time") from None
    return stamp


def _optional_timestamp(value: object, field: str) -> str | None:
    return None if value is None else _timestamp(value, field)


def _unique(ids: list[int], what: str) -> None:
    if len(set(ids)) != len(ids):
        raise ValueError(f"a {what} is repeated")


def _reason(exc: Exception) -> str:
    """An exception as a message fragment, on one line."""
    reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
    return " ".join(reason.split())


def _is_hex(text: str) -> bool:
    """Lower-case hex digits only (``int(text, 16)`` would also take ``0x``, ``+`` and ``_``)."""
    return _HEX.fullmatch(text) is not None
