"""The gallery's records: identities and templates, the checks every write applies, and
how they are read back from Redis hashes."""

from __future__ import annotations

import json
import math
import unicodedata
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

# Longer than any real name (the longest in LFW has 35 characters), short enough for one line.
MAX_NAME_CHARS = 200
# Unicode categories refused in names: control (Cc: newline, tab, ESC), format (Cf: direction
# overrides, invisible characters), line and paragraph separators (Zl, Zp), unassigned (Cn),
# surrogates (Cs) and private use (Co). The zero-width (non-)joiners are format characters that
# Persian and Indic names need, so they are allowed.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cn", "Cs", "Co"})
_ALLOWED_FORMAT_CHARACTERS = frozenset({"\u200c", "\u200d"})


@dataclass(frozen=True)
class EmbeddingSpace:
    """What a model's embeddings look like, to refuse records that cannot come from it.

    Attributes:
        dim: Embedding length; None when the model is not known by name (then only the
            gallery's own templates of that model tell the length).
        min_norm: Smallest plausible L2 norm.
        max_norm: Largest plausible L2 norm.
    """

    dim: int | None
    min_norm: float
    max_norm: float


# Any model: a norm below 1e-3 has no reliable direction, one above 1e3 is no face descriptor.
ANY_SPACE = EmbeddingSpace(None, 1e-3, 1e3)
# The shipped models (their embedders' ``dim``; tests check the two agree). dlib's descriptor is
# not normalised: on real faces its norm is 1.37-1.42 with mirror averaging; SFace's raw output
# is not either (12-14 on real faces), while its mirror average of unit halves is 0.99; FaceNet's
# (InceptionResnetV1) is exactly 1. The bounds leave wide room around those.
_DLIB_SPACE = EmbeddingSpace(128, 0.25, 4.0)
_UNIT_SPACE_128 = EmbeddingSpace(128, 0.25, 4.0)
_KNOWN_VERSIONS: dict[str, EmbeddingSpace] = {
    "dlib_resnet_v1": _DLIB_SPACE,
    "dlib_resnet_v1+flip": _DLIB_SPACE,
    "sface_2021dec": EmbeddingSpace(128, 1.0, 100.0),
    "sface_2021dec+flip": _UNIT_SPACE_128,
}
# Versions named after a weights digest: dlib's other weights may have another length; FaceNet's not.
_KNOWN_FAMILIES: dict[str, EmbeddingSpace] = {"facenet_": EmbeddingSpace(512, 0.25, 4.0)}


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
    """The one check of a person's name, for every way one comes in (enrolment, rename,
    import, feedback records, unknown clusters).

    Names are printed on terminals and in logs, one per line: a control character (newline,
    ANSI escape) could forge lines, and a format character (right-to-left override) could
    disguise one name as another.

    Raises:
        GalleryError: Not text, blank, longer than ``MAX_NAME_CHARS``, or holding a control
            or format character (the message shows the name escaped).
    """
    if not isinstance(name, str) or not name.strip():
        raise GalleryError(f"invalid identity name {_escaped(name)}: use a non-empty name")
    if len(name) > MAX_NAME_CHARS:
        raise GalleryError(f"invalid identity name: {len(name)} characters; use at most {MAX_NAME_CHARS}")
    if any(
        unicodedata.category(character) in _FORBIDDEN_CATEGORIES
        and character not in _ALLOWED_FORMAT_CHARACTERS
        for character in name
    ):
        raise GalleryError(
            f"invalid identity name {_escaped(name)}: control and format characters (newlines, tabs, "
            "terminal escapes, direction overrides) are not allowed; use letters, digits, spaces and marks"
        )


def _escaped(name: object) -> str:
    """A rejected name for a one-line message: control characters escaped, long names cut."""
    shown = ascii(name) if isinstance(name, str) else repr(name)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def check_metadata(metadata: dict[str, str]) -> None:
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise GalleryError(f"metadata must map text to text, got {key!r}: {value!r}")


def check_template(template: NewTemplate) -> tuple[NewTemplate, Embedding]:
    if not template.embedder_version or ":" in template.embedder_version:
        raise GalleryError(
            f"invalid embedder version {template.embedder_version!r}: use a non-empty name without ':'"
        )
    embedding = check_embedding(template.embedder_version, template.embedding, "a template")
    if not math.isfinite(template.quality):
        raise GalleryError(f"template quality must be finite, got {template.quality}")
    return template, embedding


def expected_space(embedder_version: str) -> EmbeddingSpace:
    """What embeddings of ``embedder_version`` look like (``ANY_SPACE`` for a model Vigil does not know)."""
    if embedder_version in _KNOWN_VERSIONS:
        return _KNOWN_VERSIONS[embedder_version]
    return next(
        (space for prefix, space in _KNOWN_FAMILIES.items() if embedder_version.startswith(prefix)), ANY_SPACE
    )


def check_embedding(embedder_version: str, embedding: Embedding, what: str = "an embedding") -> Embedding:
    """An embedding as float32 ``(D,)``, checked against the model its record names.

    A template of the wrong length would make every search of that model fail ("mixed
    dimensions"), and a zero or absurd vector has no direction to compare: one bad record
    must be refused where it comes in, not take identification down for everyone.

    Args:
        embedder_version: The model the record names.
        embedding: The vector.
        what: Names the record in messages (``a template``, ``negative 2``).

    Raises:
        GalleryError: Not 1-D, empty, not finite, of another length than the model's, or of a
            norm the model does not produce.
    """
    vector = np.asarray(embedding, dtype=np.float32)
    if vector.ndim != 1 or vector.shape[0] == 0:
        raise GalleryError(f"{what} embedding must have shape (D,), got {vector.shape}")
    if not np.isfinite(vector).all():
        raise GalleryError(f"{what} embedding holds NaN or infinity; check the embedder")
    space = expected_space(embedder_version)
    if space.dim is not None and vector.shape[0] != space.dim:
        raise GalleryError(
            f"{what} embedding has dimension {vector.shape[0]}, but {embedder_version} embeddings have "
            f"{space.dim} values; the record is corrupt or names the wrong model"
        )
    norm = float(np.linalg.norm(vector.astype(np.float64)))
    if not space.min_norm <= norm <= space.max_norm:
        raise GalleryError(
            f"{what} embedding has norm {norm:.3g}, outside the {space.min_norm:g} to {space.max_norm:g} "
            f"that {embedder_version} produces; the record is corrupt"
        )
    return vector


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
