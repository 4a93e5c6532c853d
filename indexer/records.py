"""The gallery's records: identities and templates, and the checks every write applies."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from vigil.errors import GalleryError
from vigil.typing import Embedding


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
    """

    embedder_version: str
    embedding: Embedding
    source: str = ""
    quality: float = 0.0
    captured_at: str | None = None


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
    """

    template_id: int
    identity_id: str
    embedder_version: str
    embedding: Embedding = field(repr=False)
    captured_at: str | None
    source: str
    quality: float
    created_at: str

    @property
    def dim(self) -> int:
        return int(self.embedding.shape[0])


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
