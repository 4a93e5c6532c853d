"""The embedding head in force, re-read whenever ``vigil models promote/rollback`` changes it.

The gallery stores backbone embeddings. A promoted head (``vigil train head``) maps them,
and every probe, into its own space at search time, so applying or removing a head needs no
re-enrolment. ``HeadSource`` follows ``$VIGIL_HOME/models/head/current.json``: a running
worker picks a new head up at its next batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from vigil.artifacts import CURRENT_FILE, ArtifactRegistry
from vigil.files import FileStamp, file_stamp
from vigil.models.head import EmbeddingHead, apply_head, head_from_bytes, head_space_version
from vigil.typing import Embeddings

logger = logging.getLogger(__name__)

HEAD_FILE = "head.pt"
HEAD_CALIBRATION_FILE = "calibration.json"


@dataclass(frozen=True)
class ActiveHead:
    """A loaded head and the embedding space it defines.

    Attributes:
        version: The artifact's version (``vigil models list``).
        space_version: Backbone version plus the head's content hash: what templates,
            probes, calibrations and events of this space are labelled with.
        head: The network.
        calibration: The thresholds fitted for this space when it was trained, if any.
    """

    version: str
    space_version: str
    head: EmbeddingHead
    calibration: Path | None

    def apply(self, embeddings: Embeddings) -> Embeddings:
        return apply_head(self.head, embeddings)


class HeadSource:
    """The promoted head for one backbone (None when no head is in force).

    Example:
        >>> heads = HeadSource(settings.home, "dlib_resnet_v1+flip")
        >>> active = heads.current()
    """

    def __init__(self, home: Path, backbone_version: str) -> None:
        self.registry = ArtifactRegistry(home)
        self.backbone_version = backbone_version
        self._stamp: FileStamp | None = None
        self._active: ActiveHead | None = None

    def current(self) -> ActiveHead | None:
        """The head in force now; costs a ``stat`` per call, and a load only after a change."""
        stamp = file_stamp(self.registry.root / "head" / CURRENT_FILE)
        if stamp != self._stamp:
            self._active = self._load()
            self._stamp = stamp
        return self._active

    def _load(self) -> ActiveHead | None:
        artifact = self.registry.current("head")
        if artifact is None:
            if self._active is not None:
                logger.info("no head in force: searching in the backbone's space")
            return None
        if artifact.embedder_version != self.backbone_version:
            logger.warning(
                "head %s is for embedder %s, not %s; searching without it",
                artifact.version,
                artifact.embedder_version,
                self.backbone_version,
            )
            return None
        data = artifact.file(HEAD_FILE).read_bytes()
        calibration = artifact.file(HEAD_CALIBRATION_FILE)
        active = ActiveHead(
            version=artifact.version,
            space_version=head_space_version(self.backbone_version, data),
            head=head_from_bytes(data),
            calibration=calibration if calibration.is_file() else None,
        )
        logger.info("head %s in force (space %s)", active.version, active.space_version)
        return active
