"""The gallery's portable backup format (``vigil gallery export`` / ``import``).

A JSON-lines file: the first line is a header (``format``, ``format_version``,
``exported_at``); each further line is one identity with its templates, embeddings as
base64 float32 (little-endian). Reading validates the whole file before anything is
written, so a corrupt backup never half-imports.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from indexer.records import Identity, NewTemplate, Template, check_metadata, check_name, check_template, now
from vigil.errors import GalleryError

EXPORT_FORMAT = "vigil-gallery"
EXPORT_FORMAT_VERSION = 1


def export_header() -> str:
    """The first line of an export file."""
    return json.dumps(
        {"format": EXPORT_FORMAT, "format_version": EXPORT_FORMAT_VERSION, "exported_at": now()}
    )


def identity_record(identity: Identity, templates: list[Template]) -> dict[str, object]:
    return {
        "identity_id": identity.identity_id,
        "name": identity.name,
        "metadata": identity.metadata,
        "created_at": identity.created_at,
        "updated_at": identity.updated_at,
        "templates": [
            {
                "embedder_version": template.embedder_version,
                "dim": template.dim,
                "embedding": base64.b64encode(template.embedding.astype("<f4").tobytes()).decode("ascii"),
                "captured_at": template.captured_at,
                "source": template.source,
                "quality": template.quality,
                "created_at": template.created_at,
            }
            for template in templates
        ],
    }


def read_export(path: Path) -> list[tuple[Identity, list[tuple[NewTemplate, str]]]]:
    """Parse and validate a whole export file; nothing is written here."""
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
    if header.get("format_version") != EXPORT_FORMAT_VERSION:
        raise GalleryError(
            f"gallery export {path} has format version {header.get('format_version')!r}; "
            f"this Vigil reads version {EXPORT_FORMAT_VERSION}"
        )
    records: list[tuple[Identity, list[tuple[NewTemplate, str]]]] = []
    seen_ids: set[str] = set()
    seen_names: set[str] = set()
    for line_number, line in enumerate(lines[1:], start=2):
        try:
            identity, templates = _parse_record(json.loads(line))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, binascii.Error, GalleryError) as exc:
            reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise GalleryError(f"gallery export {path}: line {line_number} is corrupt ({reason})") from None
        if identity.identity_id in seen_ids or identity.name in seen_names:
            raise GalleryError(f"gallery export {path}: line {line_number} repeats an identity id or name")
        seen_ids.add(identity.identity_id)
        seen_names.add(identity.name)
        records.append((identity, templates))
    return records


def _parse_record(record: Any) -> tuple[Identity, list[tuple[NewTemplate, str]]]:
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
    for stamp in (record["created_at"], record["updated_at"]):
        datetime.fromisoformat(stamp)
    identity = Identity(identity_id, name, metadata, record["created_at"], record["updated_at"])
    templates: list[tuple[NewTemplate, str]] = []
    for item in record["templates"]:
        blob = base64.b64decode(item["embedding"], validate=True)
        if len(blob) % 4 or len(blob) // 4 != int(item["dim"]):
            raise ValueError(f"embedding holds {len(blob)} bytes, not dim {item['dim']} × 4")
        captured_at = item["captured_at"]
        if captured_at is not None:
            datetime.fromisoformat(captured_at)
        datetime.fromisoformat(item["created_at"])
        template = NewTemplate(
            embedder_version=str(item["embedder_version"]),
            embedding=np.frombuffer(blob, dtype="<f4").astype(np.float32),
            source=str(item["source"]),
            quality=float(item["quality"]),
            captured_at=captured_at,
        )
        check_template(template)
        templates.append((template, item["created_at"]))
    return identity, templates


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True
