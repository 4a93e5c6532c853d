"""Template aging: confident recognitions in the stream become new templates of the person.

People change (children grow, adults age, beards come and go); templates from one
enrolment day drift away from the face the cameras see. With aging on (globally with
``indexer.aging.enabled``, or per person with ``vigil people aging NAME on``), a track
that ended recognised adds its best face as a template when all of these hold:

- every frame of the track named the person, for at least ``min_track_frames`` frames;
- the face scored at least the threshold in force plus ``extra_score``, with a lead of at
  least ``min_margin`` over the runner-up;
- the face is at least ``min_face_px`` pixels;
- the face is not turned further than enrolment allows (``indexer.max_enrol_yaw_deg``, head
  yaw from its landmarks);
- it is not a near-duplicate (cosine above ``max_similarity``) of one of their templates.

At most ``max_templates`` aging templates are kept per person: the oldest goes first.
Enrolment templates are never removed. Matching takes each person's best template
(``indexer.search``), so one recent template is enough to follow a changed face. Each
addition and removal is in the person's history (``vigil people history NAME``) and can be
undone (``--undo ENTRY``).

Keys, under the gallery's namespace: ``aging:opted_in`` (set of identity ids).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from redis.client import Pipeline

from indexer.gallery import Gallery
from indexer.history import history_entry
from indexer.records import NewTemplate
from vigil.config.aging import AgingConfig
from vigil.typing import Embedding

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recognition:
    """A track that ended recognised, as aging sees it.

    Attributes:
        identity_id: Who the track was.
        event_id: The track's ``track_ended`` event.
        embedder_version: The backbone embedder of ``embedding``.
        embedding: ``(D,)`` float32 of the track's best face.
        score: That face's cosine similarity to the person's best template.
        margin: Its lead over the runner-up person (``inf`` with none).
        threshold: The threshold in force for it.
        face_px: Shorter side of its box, in pixels.
        quality: Detection score × face size, kept as the template's quality.
        frames: Frames in the track.
        agreeing_frames: Frames that named this person.
        captured_at: ISO-8601 UTC capture time of the face.
        yaw_deg: Head yaw of the face (``vigil.models.head_pose``), None when unknown.
        max_yaw_deg: Largest yaw a template may have (enrolment's ``indexer.max_enrol_yaw_deg``).
    """

    identity_id: str
    event_id: str
    embedder_version: str
    embedding: Embedding
    score: float
    margin: float
    threshold: float
    face_px: float
    quality: float
    frames: int
    agreeing_frames: int
    captured_at: str
    yaw_deg: float | None = None
    max_yaw_deg: float = 90.0


def refusal(recognition: Recognition, config: AgingConfig) -> str | None:
    """Why this recognition may not teach the gallery, or None when it may (diversity aside)."""
    if recognition.frames < config.min_track_frames:
        return f"track of {recognition.frames} frames, below {config.min_track_frames}"
    if recognition.agreeing_frames < recognition.frames:
        return f"only {recognition.agreeing_frames} of {recognition.frames} frames named the person"
    reason = confidence_refusal(recognition.score, recognition.margin, recognition.threshold, config)
    if reason is not None:
        return reason
    if recognition.face_px < config.min_face_px:
        return f"face of {recognition.face_px:.0f} px, below {config.min_face_px}"
    if recognition.yaw_deg is not None and abs(recognition.yaw_deg) > recognition.max_yaw_deg:
        # The enrolment limit: a profile would teach the gallery a face the cameras rarely match.
        return f"face turned {abs(recognition.yaw_deg):.0f}°, beyond {recognition.max_yaw_deg:g}°"
    return None


def confidence_refusal(score: float, margin: float, threshold: float, config: AgingConfig) -> str | None:
    """Why a face named with this score and lead is not confident enough to teach the gallery, or None.

    The per-face part of :func:`refusal`, on its own for callers that have single photos
    rather than tracks (the template-aging simulation of ``vigil bench pairs``).

    Args:
        score: Cosine similarity to the person's best template.
        margin: Lead over the runner-up person (``inf`` with none, which passes).
        threshold: The match threshold in force.
        config: The aging rules.
    """
    if not score >= threshold + config.extra_score:
        return f"score {score:.3f} below threshold + extra"
    if not margin >= config.min_margin:
        return f"margin {margin:.3f} below {config.min_margin}"
    return None


def near_duplicate(embedding: Embedding, templates: Sequence[Embedding], max_similarity: float) -> int | None:
    """The position of the first template ``embedding`` nearly repeats, or None.

    A near-duplicate (cosine similarity above ``max_similarity``) adds nothing but weight,
    so aging skips it and the person's templates stay diverse.

    Args:
        embedding: ``(D,)`` float32, any length (normalised here).
        templates: The person's templates, each ``(D,)`` float32 in the same space.
        max_similarity: ``AgingConfig.max_similarity``.
    """
    unit = embedding / max(float(np.linalg.norm(embedding)), 1e-12)
    for position, template in enumerate(templates):
        stored = template / max(float(np.linalg.norm(template)), 1e-12)
        if float(stored @ unit) > max_similarity:
            return position
    return None


def surplus_aging_templates(aging_templates: int, max_templates: int) -> int:
    """How many of a person's oldest aging templates go before one more joins (at most ``max_templates``)."""
    return max(aging_templates - max_templates + 1, 0)


OPTED_IN_KEY = "aging:opted_in"
"""Under the gallery's namespace: the set of identity ids opted in to aging."""


def is_opted_in(gallery: Gallery, identity_id: str) -> bool:
    return bool(gallery.call(lambda: gallery.client.sismember(gallery.key(OPTED_IN_KEY), identity_id)))


def queue_opt_in(pipe: Pipeline, gallery: Gallery, identity_id: str) -> None:
    """Queue opting a person in (after ``multi()``, e.g. in a gallery import's transaction)."""
    pipe.sadd(gallery.key(OPTED_IN_KEY), identity_id)


def set_opted_in(gallery: Gallery, identity_id: str, enabled: bool) -> None:
    """Opt a person in to (or out of) aging; their identity must exist.

    Raises:
        GalleryError: Unknown identity.
    """
    gallery.get_identity(identity_id)
    key = gallery.key(OPTED_IN_KEY)
    if enabled:
        gallery.call(lambda: gallery.client.sadd(key, identity_id))
    else:
        gallery.call(lambda: gallery.client.srem(key, identity_id))


def age_templates(gallery: Gallery, recognition: Recognition, config: AgingConfig) -> int | None:
    """Add the recognition's face as an aging template if the rules allow; returns its id or None.

    Raises:
        GalleryError: The identity was deleted meanwhile, or Redis rejected a write.
    """
    if not (config.enabled or is_opted_in(gallery, recognition.identity_id)):
        return None
    reason = refusal(recognition, config)
    if reason is not None:
        logger.debug("no aging template for %s: %s", recognition.identity_id, reason)
        return None
    templates = [
        template
        for template in gallery.identity_templates(recognition.identity_id)
        if template.embedder_version == recognition.embedder_version
    ]
    duplicate = near_duplicate(recognition.embedding, [t.embedding for t in templates], config.max_similarity)
    if duplicate is not None:
        logger.debug(
            "no aging template for %s: near-duplicate of %d",
            recognition.identity_id,
            templates[duplicate].template_id,
        )
        return None
    aging = sorted((t for t in templates if t.origin == "aging"), key=lambda t: t.template_id)
    for oldest in aging[: surplus_aging_templates(len(aging), config.max_templates)]:
        note = "over indexer.aging.max_templates"
        entry = history_entry("removed", "template", oldest.template_id, "aging", recognition.event_id, note)
        gallery.remove_template(recognition.identity_id, oldest.template_id, entry)
    new = NewTemplate(
        embedder_version=recognition.embedder_version,
        embedding=recognition.embedding,
        source="aging",
        quality=recognition.quality,
        captured_at=recognition.captured_at,
        origin="aging",
        event_id=recognition.event_id,
    )
    (template_id,) = gallery.add_templates(recognition.identity_id, [new])
    logger.info(
        "aging template %d added to %s (score %.3f)", template_id, recognition.identity_id, recognition.score
    )
    return template_id


def forget_opt_in(gallery: Gallery, identity_id: str) -> None:
    """Drop a person's aging opt-in (erasure)."""
    gallery.call(lambda: gallery.client.srem(gallery.key(OPTED_IN_KEY), identity_id))
