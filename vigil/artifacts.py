"""The trainer's artifacts (calibrations, embedding heads): versioned, listed, promoted, rolled back.

Layout under ``$VIGIL_HOME/models``::

    <kind>/<version>/artifact.json   what it is: version, embedder, metrics, data summary
    <kind>/<version>/<files>         the artifact itself (``calibration.json``, ``head.pt``)
    <kind>/current.json              which version is in force, and the ones before it

Promoting a calibration also copies it to ``$VIGIL_HOME/calibration/current.json``, the file
the indexer and the running service re-read on change; rolling back puts the previous one
there (or removes it, so the shipped default applies again). A head is in force while
``head/current.json`` names it; workers check that file and swap heads without a restart.
Every write is atomic, so a running service never reads half a file.
"""

from __future__ import annotations

import builtins
import json
import logging
import re
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, get_args

from vigil.errors import VigilError
from vigil.files import write_text_atomically

logger = logging.getLogger(__name__)

ArtifactKind = Literal["calibration", "head", "attributes", "attribute_tail"]
KINDS: tuple[ArtifactKind, ...] = get_args(ArtifactKind)
Scalar = float | int | str
ARTIFACT_FILE = "artifact.json"
CURRENT_FILE = "current.json"
CALIBRATION_FILE = "calibration.json"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ArtifactError(VigilError):
    """An artifact is missing, unreadable, or cannot be promoted."""


@dataclass(frozen=True)
class Artifact:
    """One trained artifact and what is known about it.

    Attributes:
        kind: ``calibration``, ``head``, ``attributes`` (age and gender heads) or
            ``attribute_tail`` (fine-tuned copies of the backbone's last blocks for age and gender).
        version: Unique within its kind, e.g. ``head-20261122T193000-3f2a``.
        folder: Where its files are.
        created_at: ISO 8601, UTC.
        embedder_version: The backbone embedding space it was made for.
        metrics: Figures measured on held-out data (accuracy, FAR, ...).
        data: What it was trained or fitted on, and how.
        notes: Free text (e.g. why it was promoted against the rule).
    """

    kind: ArtifactKind
    version: str
    folder: Path
    created_at: str
    embedder_version: str
    metrics: dict[str, Scalar]
    data: dict[str, Scalar]
    notes: str = ""

    def file(self, name: str) -> Path:
        """One of the artifact's files."""
        return self.folder / name

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "folder": str(self.folder)}


class ArtifactRegistry:
    """The artifacts under one Vigil home.

    Example:
        >>> registry = ArtifactRegistry(settings.home)
        >>> artifact = registry.add("head", {"head.pt": data}, embedder_version="dlib_resnet_v1+flip",
        ...                         metrics={"accuracy": 0.99}, data={"dataset": "lfw"})
        >>> registry.promote("head", artifact.version)
    """

    def __init__(self, home: Path) -> None:
        self.root = home / "models"
        self.home = home

    def add(
        self,
        kind: ArtifactKind,
        files: Mapping[str, bytes],
        *,
        embedder_version: str,
        metrics: Mapping[str, Scalar],
        data: Mapping[str, Scalar],
        notes: str = "",
    ) -> Artifact:
        """Store a new artifact (not in force until promoted) and return it.

        Raises:
            ArtifactError: An unknown kind, or a file name with a path in it.
        """
        _check_kind(kind)
        for name in files:
            if not _SAFE_NAME.match(name) or name == ARTIFACT_FILE:
                raise ArtifactError(f"artifact file name {name!r} is not allowed; use a plain file name")
        now = datetime.now(UTC)
        version = f"{kind}-{now.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(2)}"
        folder = self.root / kind / version
        staging = self.root / kind / f".{version}.partial"
        staging.mkdir(parents=True)
        for name, content in files.items():
            (staging / name).write_bytes(content)
        artifact = Artifact(
            kind=kind,
            version=version,
            folder=folder,
            created_at=now.isoformat(timespec="microseconds"),  # orders artifacts made in one second
            embedder_version=embedder_version,
            metrics=dict(metrics),
            data=dict(data),
            notes=notes,
        )
        record = {key: value for key, value in artifact.to_dict().items() if key != "folder"}
        (staging / ARTIFACT_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        staging.rename(folder)  # the artifact appears whole or not at all
        logger.info("stored %s %s", kind, version)
        return artifact

    def list(self, kind: ArtifactKind | None = None) -> builtins.list[Artifact]:
        """Every stored artifact (of ``kind``), oldest first."""
        kinds = KINDS if kind is None else (_check_kind(kind),)
        found = []
        for each in kinds:
            folder = self.root / each
            if folder.is_dir():
                found += [
                    _read(path) for path in sorted(folder.iterdir()) if (path / ARTIFACT_FILE).is_file()
                ]
        return sorted(found, key=lambda artifact: (artifact.kind, artifact.created_at, artifact.version))

    def get(self, kind: ArtifactKind, version: str) -> Artifact:
        """The artifact ``version`` of ``kind``.

        Raises:
            ArtifactError: There is none (the message lists what there is).
        """
        _check_kind(kind)
        folder = self.root / kind / version
        if not _SAFE_NAME.match(version) or not (folder / ARTIFACT_FILE).is_file():
            known = ", ".join(artifact.version for artifact in self.list(kind)) or "none"
            raise ArtifactError(f"no {kind} {version!r}; stored: {known} (see `vigil models list`)")
        return _read(folder)

    def history(self, kind: ArtifactKind) -> builtins.list[str]:
        """Versions promoted so far, the one in force last (empty when none is)."""
        path = self.root / _check_kind(kind) / CURRENT_FILE
        if not path.is_file():
            return []
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return [str(version) for version in raw["history"]]
        except (OSError, ValueError, KeyError, TypeError):
            raise ArtifactError(f"{path} is corrupt; promote a version again to rewrite it") from None

    def current(self, kind: ArtifactKind) -> Artifact | None:
        """The artifact in force, or None."""
        history = self.history(kind)
        return self.get(kind, history[-1]) if history else None

    def promote(self, kind: ArtifactKind, version: str) -> Artifact:
        """Put ``version`` in force (a calibration is also copied where the service reads it).

        Raises:
            ArtifactError: No such artifact.
        """
        artifact = self.get(kind, version)
        history = [old for old in self.history(kind) if old != version] + [version]
        self._apply(artifact)
        self._write_history(kind, history)
        logger.info("promoted %s %s", kind, version)
        return artifact

    def rollback(self, kind: ArtifactKind) -> Artifact | None:
        """Go back to the version promoted before the current one; returns it (None: back to none)."""
        history = self.history(kind)
        if not history:
            raise ArtifactError(f"no {kind} is in force; nothing to roll back")
        history = history[:-1]
        previous = self.get(kind, history[-1]) if history else None
        if previous is not None:
            self._apply(previous)
        elif kind == "calibration":
            active = self.home / "calibration" / CURRENT_FILE
            active.unlink(missing_ok=True)  # the shipped default applies again
        self._write_history(kind, history)
        logger.info("rolled %s back to %s", kind, previous.version if previous else "none")
        return previous

    def remove(self, kind: ArtifactKind, version: str) -> None:
        """Delete a stored artifact that is not in force.

        Raises:
            ArtifactError: No such artifact, or it is in force.
        """
        artifact = self.get(kind, version)
        if version in self.history(kind)[-1:]:
            raise ArtifactError(f"{kind} {version} is in force; promote another or roll back first")
        shutil.rmtree(artifact.folder)

    def _apply(self, artifact: Artifact) -> None:
        if artifact.kind == "calibration":
            source = artifact.file(CALIBRATION_FILE)
            write_text_atomically(
                self.home / "calibration" / CURRENT_FILE, source.read_text(encoding="utf-8")
            )

    def _write_history(self, kind: ArtifactKind, history: builtins.list[str]) -> None:
        path = self.root / kind / CURRENT_FILE
        if not history:
            path.unlink(missing_ok=True)
            return
        write_text_atomically(path, json.dumps({"current": history[-1], "history": history}, indent=2) + "\n")


def kind_of(version: str) -> ArtifactKind:
    """The kind a version names (versions start with their kind).

    Raises:
        ArtifactError: It names no known kind.
    """
    kind = version.split("-", 1)[0]
    if kind not in KINDS:
        raise ArtifactError(f"{version!r} is not an artifact version; `vigil models list` shows them")
    return kind


def _check_kind(kind: str) -> ArtifactKind:
    if kind not in KINDS:
        raise ArtifactError(f"unknown artifact kind {kind!r}; use one of {', '.join(KINDS)}")
    return kind


def _read(folder: Path) -> Artifact:
    path = folder / ARTIFACT_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Artifact(
            kind=_check_kind(raw["kind"]),
            version=str(raw["version"]),
            folder=folder,
            created_at=str(raw["created_at"]),
            embedder_version=str(raw["embedder_version"]),
            metrics=dict(raw.get("metrics", {})),
            data=dict(raw.get("data", {})),
            notes=str(raw.get("notes", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        raise ArtifactError(f"{path} is unreadable or corrupt; remove the folder {folder}") from None
