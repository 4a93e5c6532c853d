"""Enrolment: photos of a person in, quality-checked templates in the gallery out.

Each photo must hold one usable face: big enough, sharp enough, and not turned further than
``indexer.max_enrol_yaw_deg`` (head pose from its landmarks, ``vigil.models.head_pose``; beyond
``warn_enrol_yaw_deg`` a warning says so). With several faces the largest is taken and a
warning says so. Rejected photos are listed with the reason; a
person is written only if at least one photo was accepted, and all their templates are
written in one transaction, so an enrolment is never half-done.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from indexer.identify import Identifier
from indexer.records import Identity, NewTemplate
from indexer.sources import SourceStore
from vigil.config.indexer import IndexerConfig
from vigil.errors import GalleryError, VigilError
from vigil.image import load_image
from vigil.models.head_pose import head_pose_in_box
from vigil.models.pipeline import Face, FacePipeline
from vigil.typing import ImageRGB

logger = logging.getLogger(__name__)

# Faces are resized to this side before measuring sharpness, so the measure does not depend on resolution.
_SHARPNESS_SIDE_PX = 112
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
"""What a folder of photos is read for (other files in it are left alone)."""


@dataclass(frozen=True)
class RejectedImage:
    path: Path
    reason: str


@dataclass(frozen=True)
class EnrolmentReport:
    """What an enrolment did.

    Attributes:
        identity: The person enrolled (new, or existing when adding photos).
        accepted: Photos that became templates.
        rejected: Photos that did not, with the reason.
        warnings: Things the user should know (several faces, look-alikes).
    """

    identity: Identity
    accepted: list[Path]
    rejected: list[RejectedImage]
    warnings: list[str] = field(default_factory=list)


class NoUsableFaceError(GalleryError):
    """No photo of an enrolment held a usable face; nothing was written.

    Attributes:
        rejected: Each photo with the reason it was refused.
    """

    def __init__(self, message: str, rejected: Sequence[RejectedImage]) -> None:
        super().__init__(message)
        self.rejected = list(rejected)


@dataclass(frozen=True)
class PersonEnrolment:
    """One person's outcome in :func:`enroll_people`: their report, or why nothing was enrolled."""

    name: str
    report: EnrolmentReport | None
    error: str | None = None


def image_files(paths: Sequence[Path]) -> list[Path]:
    """Expand folders into the image files they hold (sorted); files pass through."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(path)
    return files


def people_folders(folder: Path) -> dict[str, list[Path]]:
    """A folder of people: each sub-folder's name → the photos in it.

    Raises:
        GalleryError: ``folder`` is not a folder, or has no sub-folders.
    """
    if not folder.is_dir():
        raise GalleryError(f"{folder} is not a folder")
    people = {sub.name: image_files([sub]) for sub in sorted(folder.iterdir()) if sub.is_dir()}
    if not people:
        raise GalleryError(f"{folder} has no sub-folders (expected one per person)")
    return people


def enroll_people(
    identifier: Identifier,
    config: IndexerConfig,
    people: Mapping[str, Sequence[Path]],
    *,
    add_to_existing: bool = False,
    sources: SourceStore | None = None,
) -> Iterator[PersonEnrolment]:
    """Enrol each person from their photos, one after the other (:func:`enroll_person`).

    A person who cannot be enrolled (no photos, none usable, the name taken) is reported with
    the reason and the others go on; each outcome is yielded as soon as it is known.
    """
    for name, photos in people.items():
        if not photos:
            yield PersonEnrolment(name, None, f"{name}: no photos found")
            continue
        try:
            report = enroll_person(
                identifier, config, name, list(photos), add_to_existing=add_to_existing, sources=sources
            )
        except VigilError as exc:
            yield PersonEnrolment(name, None, str(exc))
            continue
        yield PersonEnrolment(name, report)


def sharpness(image: ImageRGB, box_xyxy: np.ndarray) -> float:
    """Variance of the Laplacian of the face region, resized to a fixed size, in grey."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (round(float(v)) for v in box_xyxy)
    crop = image[max(y1, 0) : min(y2, height), max(x1, 0) : min(x2, width)]
    if crop.size == 0:
        return 0.0
    grey = cv2.cvtColor(cv2.resize(crop, (_SHARPNESS_SIDE_PX, _SHARPNESS_SIDE_PX)), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def enroll_person(
    identifier: Identifier,
    config: IndexerConfig,
    name: str,
    paths: Sequence[Path],
    *,
    add_to_existing: bool = False,
    sources: SourceStore | None = None,
) -> EnrolmentReport:
    """Enrol ``name`` from photos (or add photos to them with ``add_to_existing``).

    The identifier's gallery receives the templates, its pipeline embeds the photos, and its
    search warns when the new photos look like someone already enrolled. With ``sources``
    the accepted photos are kept (the user opted in), for re-embedding later.

    Raises:
        GalleryError: The name is taken (without ``add_to_existing``) or unknown (with it);
            nothing is written then.
        NoUsableFaceError: No photo held a usable face (each photo's reason is in it).
    """
    gallery, pipeline = identifier.gallery, identifier.pipeline
    existing = gallery.find_by_name(name)
    if existing is not None and not add_to_existing:
        raise GalleryError(f"{name!r} is already enrolled; add photos with --add, or choose another name")
    if existing is None and add_to_existing:
        raise GalleryError(f"{name!r} is not enrolled; enrol them first (without --add)")
    accepted: list[tuple[Path, Face, float]] = []
    rejected: list[RejectedImage] = []
    warnings: list[str] = []
    for path in paths:
        try:
            face, quality, warning = usable_face(pipeline, config, path)
        except VigilError as exc:
            rejected.append(RejectedImage(path, str(exc)))
            continue
        accepted.append((path, face, quality))
        if warning:
            warnings.append(warning)
    if not accepted:
        reasons = "; ".join(f"{r.path.name}: {r.reason}" for r in rejected[:3])
        raise NoUsableFaceError(
            f"no usable face in any of the {len(paths)} photos of {name!r} ({reasons})", rejected
        )
    warnings += _lookalike_warnings(identifier, name, [face for _, face, _ in accepted])
    version = pipeline.embedder.version
    templates = [
        NewTemplate(embedder_version=version, embedding=face.embedding, source=path.name, quality=quality)
        for path, face, quality in accepted
    ]
    if existing is None:
        identity, template_ids = gallery.enroll(name, templates)
    else:
        template_ids = gallery.add_templates(existing.identity_id, templates)
        identity = existing
    if sources is not None:
        for (path, _, _), template_id in zip(accepted, template_ids, strict=True):
            sources.keep(identity.identity_id, template_id, path)
    # The id, not the name: logs outlive a person's erasure.
    logger.info(
        "enrolled identity %s: %d photos accepted, %d rejected",
        identity.identity_id,
        len(accepted),
        len(rejected),
    )
    return EnrolmentReport(identity, [path for path, _, _ in accepted], rejected, warnings)


def usable_face(pipeline: FacePipeline, config: IndexerConfig, path: Path) -> tuple[Face, float, str | None]:
    """The photo's face, its sharpness and an optional warning; raises VigilError when unusable."""
    image = load_image(path)
    faces = pipeline.analyze([image])[0]
    if not faces:
        raise GalleryError("no face found")
    face = max(faces, key=lambda candidate: candidate.size_px)
    warning = f"{path.name}: {len(faces)} faces found, the largest was used" if len(faces) > 1 else None
    if face.size_px < config.min_face_size_px:
        raise GalleryError(f"face is {face.size_px:.0f} px, below the {config.min_face_size_px} px minimum")
    quality = sharpness(image, face.box_xyxy)
    if quality < config.min_sharpness:
        raise GalleryError(f"face is too blurred (sharpness {quality:.1f} < {config.min_sharpness})")
    pose_warning = pose_refusal(face.landmarks, face.box_xyxy, config)
    if pose_warning is not None:
        yaw, refused = pose_warning
        if refused:
            raise GalleryError(
                f"face is turned {abs(yaw):.0f}° (yaw), beyond the {config.max_enrol_yaw_deg:g}° limit"
            )
        profile = f"{path.name}: face turned {abs(yaw):.0f}° (yaw); a frontal photo makes a better template"
        warning = profile if warning is None else f"{warning}; {profile}"
    return face, quality, warning


def pose_refusal(
    landmarks: np.ndarray, box_xyxy: np.ndarray, config: IndexerConfig
) -> tuple[float, bool] | None:
    """The face's yaw and whether it is refused, when it is beyond the warning limit; else None.

    The yaw is relative to the line of sight (``head_pose_in_box``), as for events and aging:
    a face looking at the camera from the edge of a wide photo is frontal.

    A face whose pose cannot be told (degenerate landmarks) is let through: the size and
    sharpness checks judge it.
    """
    pose = head_pose_in_box(landmarks, box_xyxy)
    if pose is None or abs(pose.yaw) <= min(config.warn_enrol_yaw_deg, config.max_enrol_yaw_deg):
        return None
    return pose.yaw, abs(pose.yaw) > config.max_enrol_yaw_deg


def _lookalike_warnings(identifier: Identifier, name: str, faces: list[Face]) -> list[str]:
    """Warn when the new photos match someone else already enrolled."""
    candidates = identifier.candidates(np.stack([face.embedding for face in faces]))
    threshold = identifier.thresholds().threshold  # after candidates(): for the current gallery
    warnings = {
        f"{name!r} looks like already enrolled {other!r} (similarity {score:.3f})"
        for matches in candidates
        for other, score in matches
        if other != name and score >= threshold
    }
    return sorted(warnings)
