"""Calibration files: the decision thresholds of one embedder, with how they were measured.

A calibration is a versioned JSON file. It says which embedder it is for, the open-set
identification rule (threshold + margin) with the false-positive identification rate
(FPIR) it was fitted to and what it achieved, optionally a 1:1 verification threshold,
and the data and protocol behind the figures. Thresholds are cosine similarities.

Where the thresholds come from, first match wins:

1. ``indexer.match_threshold`` / ``indexer.match_margin`` set in the configuration;
2. ``indexer.calibration_file`` when set;
3. ``$VIGIL_HOME/calibration/current.json`` (what the trainer writes);
4. the default shipped for the embedder in ``indexer/calibrations/`` (fitted on LFW).

``CalibrationSource`` re-reads the file when it changes, so a running service picks up a
new calibration without a restart.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vigil.config.indexer import IndexerConfig
from vigil.errors import CalibrationError
from vigil.files import FileStamp, file_stamp, write_text_atomically

logger = logging.getLogger(__name__)

CALIBRATION_FORMAT = "vigil-calibration"
CALIBRATION_FORMAT_VERSION = 1
SHIPPED_DIR = Path(__file__).parent / "calibrations"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GallerySizeRule(_Record):
    """The rule fitted for galleries of up to ``gallery_identities`` people.

    A stranger is compared with everyone enrolled, so the bigger the gallery, the likelier
    some enrolled person scores high by chance: the threshold that keeps the FPIR at its
    target grows with the gallery.
    """

    gallery_identities: int = Field(ge=1)
    threshold: float = Field(ge=-1.0, le=1.0)
    margin: float = Field(ge=0.0, le=2.0)
    fpir: float = Field(ge=0.0, le=1.0)
    dir: float = Field(ge=0.0, le=1.0)


class IdentificationCalibration(_Record):
    """The open-set rule: accept the best person if ``score >= threshold`` and ``lead >= margin``."""

    threshold: float = Field(ge=-1.0, le=1.0)
    margin: float = Field(ge=0.0, le=2.0)
    target_fpir: float = Field(ge=0.0, le=1.0, description="The FPIR the rule was fitted to.")
    fpir: float = Field(ge=0.0, le=1.0, description="FPIR achieved on the calibration data.")
    dir: float = Field(ge=0.0, le=1.0, description="Detection-and-identification rate achieved.")
    misidentification_rate: float = Field(ge=0.0, le=1.0)
    gallery_identities: int = Field(ge=1)
    known_probes: int = Field(ge=1)
    unknown_probes: int = Field(ge=1)
    by_gallery_size: list[GallerySizeRule] = Field(
        default_factory=list, description="Rules for smaller galleries, smallest first."
    )

    def rule_for(self, gallery_identities: int | None) -> tuple[float, float]:
        """``(threshold, margin)`` for a gallery of this many people (None: the full-size rule).

        The rule of the smallest fitted gallery at least as big is used, so the FPIR stays
        at or below its target; beyond the largest fitted size, the largest one's rule.
        """
        if gallery_identities is not None:
            for rule in sorted(self.by_gallery_size, key=lambda r: r.gallery_identities):
                if rule.gallery_identities >= gallery_identities:
                    return rule.threshold, rule.margin
        return self.threshold, self.margin


class VerificationCalibration(_Record):
    """The 1:1 rule: two faces are the same person if their similarity is ``>= threshold``."""

    threshold: float = Field(ge=-1.0, le=1.0)
    target_far: float = Field(ge=0.0, le=1.0)
    far: float = Field(ge=0.0, le=1.0)
    tar: float = Field(ge=0.0, le=1.0)
    genuine_pairs: int = Field(ge=1)
    impostor_pairs: int = Field(ge=1)


class Calibration(_Record):
    """A calibration file's contents."""

    format: Literal["vigil-calibration"] = "vigil-calibration"
    format_version: Literal[1] = 1
    calibration_id: str = Field(min_length=1, description="Names this calibration in logs and events.")
    created_at: str
    embedder_version: str = Field(min_length=1)
    metric: Literal["cosine"] = "cosine"
    identification: list[IdentificationCalibration] = Field(
        min_length=1, description="One rule set per target FPIR (distinct targets)."
    )
    verification: VerificationCalibration | None = None
    data: dict[str, str | int | float] = Field(
        default_factory=dict, description="Dataset, protocol and counts behind the figures."
    )

    def for_target(self, target_fpir: float) -> IdentificationCalibration:
        """The rule set fitted to ``target_fpir``.

        Raises:
            CalibrationError: This calibration has no rules for that target.
        """
        for rules in self.identification:
            if math.isclose(rules.target_fpir, target_fpir, rel_tol=1e-6):
                return rules
        available = ", ".join(f"{rules.target_fpir:g}" for rules in self.identification)
        raise CalibrationError(
            f"calibration {self.calibration_id} has no rules for target FPIR {target_fpir:g} "
            f"(it has {available}); set indexer.target_fpir to one of those or recalibrate"
        )


@dataclass(frozen=True)
class Thresholds:
    """The open-set rule in force and where it came from (for logs and events)."""

    threshold: float
    margin: float
    source: str


@dataclass(frozen=True)
class RuleOverride:
    """A threshold and/or margin set over the calibrated rule, e.g. a camera's own
    ``match_threshold`` / ``match_margin``.

    Attributes:
        threshold: Replaces the calibrated threshold (cosine similarity); None keeps it.
        margin: Replaces the calibrated margin; None keeps it.
        label: Who overrides, appended to the rule's ``source`` (e.g. ``camera door's override``).
    """

    threshold: float | None = None
    margin: float | None = None
    label: str = "override"

    def over(self, calibrated: Thresholds) -> Thresholds:
        """The rule in force: ``calibrated`` with what this override sets."""
        return Thresholds(
            calibrated.threshold if self.threshold is None else self.threshold,
            calibrated.margin if self.margin is None else self.margin,
            f"{calibrated.source}; {self.label}",
        )


def read_calibration(path: Path) -> Calibration:
    """Parse and validate a calibration file; raises ``CalibrationError`` with one line on any problem."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CalibrationError(f"calibration file {path} not found; check indexer.calibration_file") from None
    except OSError as exc:
        raise CalibrationError(f"cannot read calibration file {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CalibrationError(f"calibration file {path} is not JSON; it is corrupt") from None
    if not isinstance(raw, dict) or raw.get("format") != CALIBRATION_FORMAT:
        raise CalibrationError(f"{path} is not a Vigil calibration file (no {CALIBRATION_FORMAT!r} format)")
    if raw.get("format_version") != CALIBRATION_FORMAT_VERSION:
        raise CalibrationError(
            f"calibration file {path} has format version {raw.get('format_version')!r}; "
            f"this Vigil reads version {CALIBRATION_FORMAT_VERSION}"
        )
    try:
        return Calibration.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise CalibrationError(f"calibration file {path}: {where}: {first['msg']}") from None


def write_calibration(path: Path, calibration: Calibration) -> None:
    """Write ``calibration`` atomically (a running service never reads half a file)."""
    write_text_atomically(path, calibration.model_dump_json(indent=2) + "\n")


def active_calibration_path(home: Path) -> Path:
    """Where the trainer puts the calibration the service should use."""
    return home / "calibration" / "current.json"


def shipped_calibration_path(embedder_version: str) -> Path:
    return SHIPPED_DIR / f"{embedder_version}.json"


class CalibrationSource:
    """The thresholds for one embedding space, re-read whenever the calibration file changes.

    With a head in force (``indexer.head_source``) the space is the head's, and its own
    calibration (stored with it) applies unless ``current.json`` was fitted to that space.

    Example:
        >>> source = CalibrationSource(settings.indexer, settings.home, "dlib_resnet_v1+flip")
        >>> source.current().threshold
        0.93
    """

    def __init__(
        self, config: IndexerConfig, home: Path, embedder_version: str, space_calibration: Path | None = None
    ) -> None:
        self.config = config
        self.home = home
        self.embedder_version = embedder_version
        self.space_calibration = space_calibration
        self._stamp: tuple[Path, FileStamp | None] | None = None
        self._calibration: Calibration | None = None
        self._versions: dict[Path, tuple[FileStamp | None, str | None]] = {}

    def use_space(self, embedder_version: str, space_calibration: Path | None) -> None:
        """Follow another embedding space (a head promoted or removed) and the calibration stored with it."""
        if (embedder_version, space_calibration) != (self.embedder_version, self.space_calibration):
            self.embedder_version = embedder_version
            self.space_calibration = space_calibration
            self._calibration = self._stamp = None

    def path(self) -> Path | None:
        """The calibration file in force, or None when there is none for this embedder."""
        if self.config.calibration_file is not None:
            return self.config.calibration_file
        active = active_calibration_path(self.home)
        if active.is_file() and self._embedder_of(active) == self.embedder_version:
            return active
        for candidate in (self.space_calibration, shipped_calibration_path(self.embedder_version)):
            if candidate is not None and candidate.is_file():
                return candidate
        # A calibration for another embedder is still reported, so the error says what is wrong.
        return active if active.is_file() else None

    def current(self, gallery_identities: int | None = None) -> Thresholds:
        """The rule in force now for a gallery of this many people (None: the calibration's full size).

        Costs a ``stat`` per call; the file is parsed only when it changed.
        """
        if self.config.match_threshold is not None and self.config.match_margin is not None:
            return Thresholds(self.config.match_threshold, self.config.match_margin, "configuration")
        path = self.path()
        stamp = (path, file_stamp(path)) if path is not None else None
        if self._calibration is None or stamp != self._stamp:
            self._calibration = self._load(path)
            self._stamp = stamp
            logger.info("calibration %s loaded from %s", self._calibration.calibration_id, path)
        rules = self._calibration.for_target(self.config.target_fpir)
        threshold, margin = rules.rule_for(gallery_identities)
        if self.config.match_threshold is not None:
            threshold = self.config.match_threshold
        if self.config.match_margin is not None:
            margin = self.config.match_margin
        return Thresholds(threshold, margin, f"calibration {self._calibration.calibration_id} ({path})")

    def _embedder_of(self, path: Path) -> str | None:
        """The embedder a calibration file is for (None if unreadable), parsed again only after a change."""
        stamp = file_stamp(path)
        cached = self._versions.get(path)
        if cached is None or cached[0] != stamp:
            try:
                version = str(json.loads(path.read_text(encoding="utf-8")).get("embedder_version"))
            except (OSError, ValueError, AttributeError):
                version = None
            self._versions[path] = cached = (stamp, version)
        return cached[1]

    def _load(self, path: Path | None) -> Calibration:
        if path is None:
            raise CalibrationError(
                f"no calibration for embedder {self.embedder_version}; run `vigil calibrate`, "
                "or set indexer.match_threshold and indexer.match_margin"
            )
        calibration = read_calibration(path)
        if calibration.embedder_version != self.embedder_version:
            raise CalibrationError(
                f"calibration {path} is for embedder {calibration.embedder_version}, but the embedder is "
                f"{self.embedder_version}; calibrate this embedder or remove the file"
            )
        return calibration
