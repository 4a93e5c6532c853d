"""Enrolment photos kept on disk, only when the user opts in (``indexer.keep_sources``).

Vigil stores embeddings, not faces. A user who wants to switch embedders later without
re-collecting photos can opt in to keeping them: each accepted photo is copied to
``$VIGIL_HOME/sources/{identity_id}/{template_id}{suffix}``, so ``vigil gallery reembed``
can compute templates for a new embedder. Erasing a person erases their folder.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from vigil.config import Settings
from vigil.files import write_atomically

logger = logging.getLogger(__name__)


class SourceStore:
    """Kept enrolment photos, one folder per identity, one file per template.

    Example:
        >>> store = SourceStore(settings.home / "sources")
        >>> store.keep(identity_id, template_id, Path("alice.jpg"))
        >>> store.find(identity_id, template_id)
        PosixPath('.../sources/3f2a…/17.jpg')
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def from_settings(cls, settings: Settings) -> SourceStore:
        return cls(settings.home / "sources")

    def keep(self, identity_id: str, template_id: int, photo: Path) -> Path:
        """Copy ``photo`` as the source of ``template_id`` (atomically: never half a file)."""
        target = self._folder(identity_id) / f"{template_id}{photo.suffix.lower()}"
        write_atomically(target, lambda temporary: shutil.copyfile(photo, temporary))
        return target

    def find(self, identity_id: str, template_id: int) -> Path | None:
        """The kept photo of a template, or None when it was not kept."""
        folder = self._folder(identity_id)
        if not folder.is_dir():
            return None
        return next((path for path in folder.glob(f"{template_id}.*") if path.is_file()), None)

    def erase(self, identity_id: str) -> int:
        """Delete every kept photo of a person; returns how many there were."""
        folder = self._folder(identity_id)
        if not folder.is_dir():
            return 0
        count = sum(1 for path in folder.iterdir() if path.is_file())
        shutil.rmtree(folder)
        logger.info("erased %d kept photos of identity %s", count, identity_id)
        return count

    def _folder(self, identity_id: str) -> Path:
        # Identity ids are uuid4 hex from the gallery; refuse anything that could escape the root.
        if not identity_id.isalnum():
            raise ValueError(f"invalid identity id {identity_id!r}")
        return self.root / identity_id
