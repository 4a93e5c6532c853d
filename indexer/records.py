"""The gallery's records: identities and templates, the checks every write applies, and
how they are read back from Redis hashes."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, TypeAlias, get_args

import numpy as np

from vigil.errors import GalleryError
from vigil.streams import text
from vigil.typing import Embedding

TemplateOrigin: TypeAlias = Literal["enrol", "aging", "feedback", "unknowns"]
"""How a template came into the gallery: enrolment (also import and re-embedding), template
aging from the stream, a ``vigil feedback --is`` correction, or an enrolled unknown cluster."""
_ORIGINS: dict[str, TemplateOrigin] = {origin: origin for origin in get_args(TemplateOrigin)}


@dataclass(frozen=True)
class Identity:
    """A person in the gallery.

    Attributes:
        identity_id: uuid4 hex.
        name: Unique (case-sensitive) display name.
        metadata: Free-form text fields.
        created_at: ISO-8601 UTC timestamp.
        updated_at: ISO-8601 UTC timestamp of the last change to name or metadata.
    """

    identity_id: str
    name: str
    metadata: dict[str, str]
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class NewTemplate:
    """A template to enrol.

    Attributes:
        embedder_version: Which embedder produced it; only templates of one version are compared.
        embedding: ``(D,)`` float32 (stored as float32 bytes).
        source: Where it came from (file name, camera, ...).
        quality: Capture quality score (higher is better; the scale is the caller's).
        captured_at: ISO-8601 timestamp of the capture, when known.
        origin: How it came in (kept in the person's history).
        event_id: The stream event it came from (aging, feedback, unknowns), if any.
    """

    embedder_version: str
    embedding: Embedding
    source: str = ""
    quality: float = 0.0
    captured_at: str | None = None
    origin: TemplateOrigin = "enrol"
    event_id: str | None = None


@dataclass(frozen=True)
class Template:
    """A stored template.

    Attributes:
        template_id: Gallery-wide int64 id (also the search index's id).
        identity_id: Whose template it is.
        embedder_version: Which embedder produced it.
        embedding: ``(D,)`` float32.
        captured_at: ISO-8601 timestamp of the capture, or None.
        source: Where it came from.
        quality: Capture quality score.
        created_at: ISO-8601 UTC timestamp of enrolment.
        origin: How it came in.
        event_id: The stream event it came from, if any.
    """

    template_id: int
    identity_id: str
    embedder_version: str
    embedding: Embedding = field(repr=False)
    captured_at: str | None
    source: str
    quality: float
    created_at: str
    origin: TemplateOrigin = "enrol"
    event_id: str | None = None

    @property
    def dim(self) -> int:
        return int(self.embedding.shape[0])


@dataclass(frozen=True)
class TemplateSpaces:
    """Which embedding spaces (embedder versions) each person has templates in, and how many.

    Templates of different embedder versions are never compared, so a person can be
    recognised only with an embedder they have templates for.

    Attributes:
        counts: Identity id → embedder version → number of templates. People without any
            template are absent.
    """

    counts: dict[str, dict[str, int]]

    def versions(self) -> list[str]:
        """Every embedder version with at least one template, sorted."""
        return sorted({version for per_person in self.counts.values() for version in per_person})

    def of(self, identity_id: str) -> dict[str, int]:
        """One person's template count per embedder version (empty when they have none)."""
        return dict(self.counts.get(identity_id, {}))

    def people(self, version: str) -> int:
        """How many people have templates of ``version``."""
        return sum(1 for per_person in self.counts.values() if version in per_person)

    def templates(self, version: str) -> int:
        """How many templates of ``version`` the gallery holds."""
        return sum(per_person.get(version, 0) for per_person in self.counts.values())

    def without(self, version: str) -> list[str]:
        """Identity ids of people who have templates, but none of ``version``, sorted."""
        return sorted(
            identity_id for identity_id, per_person in self.counts.items() if version not in per_person
        )


def now() -> str:
    """The current time as ISO-8601 UTC, the format of every gallery timestamp."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def check_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise GalleryError(f"invalid identity name {name!r}: use a non-empty name")


def check_metadata(metadata: dict[str, str]) -> None:
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise GalleryError(f"metadata must map text to text, got {key!r}: {value!r}")


def check_template(template: NewTemplate) -> tuple[NewTemplate, Embedding]:
    if not template.embedder_version or ":" in template.embedder_version:
        raise GalleryError(
            f"invalid embedder version {template.embedder_version!r}: use a non-empty name without ':'"
        )
    embedding = np.asarray(template.embedding, dtype=np.float32)
    if embedding.ndim != 1 or embedding.shape[0] == 0:
        raise GalleryError(f"a template embedding must have shape (D,), got {embedding.shape}")
    if not np.isfinite(embedding).all():
        raise GalleryError("a template embedding holds NaN or infinity; check the embedder")
    if not math.isfinite(template.quality):
        raise GalleryError(f"template quality must be finite, got {template.quality}")
    return template, embedding


def blob(raw: bytes | str) -> bytes:
    """A binary field of a Redis reply (embeddings are float32 bytes)."""
    if isinstance(raw, str):
        raise GalleryError("the Redis client decodes responses; connect with decode_responses off")
    return raw


def identity_from_hash(identity_id: str, raw: Mapping[bytes | str, bytes | str]) -> Identity:
    fields = {text(key): text(value) for key, value in raw.items()}
    return Identity(
        identity_id=identity_id,
        name=fields["name"],
        metadata=dict(json.loads(fields.get("metadata", "{}"))),
        created_at=fields["created_at"],
        updated_at=fields["updated_at"],
    )


def template_from_hash(template_id: int, raw: Mapping[bytes | str, bytes | str]) -> Template:
    fields = {text(key): value for key, value in raw.items()}
    captured_at = fields.get("captured_at")
    event_id = fields.get("event_id")
    return Template(
        template_id=template_id,
        identity_id=text(fields["identity_id"]),
        embedder_version=text(fields["embedder_version"]),
        embedding=np.frombuffer(blob(fields["embedding"]), dtype="<f4").astype(np.float32),
        captured_at=None if captured_at is None else text(captured_at),
        source=text(fields.get("source", b"")),
        quality=float(fields.get("quality", b"0")),
        created_at=text(fields["created_at"]),
        origin=_ORIGINS.get(text(fields.get("origin", b"enrol")), "enrol"),
        event_id=None if event_id is None else text(event_id),
    )
