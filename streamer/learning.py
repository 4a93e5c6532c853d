"""What the stream learns from tracks: unknown faces kept for clustering, and template aging.

The tracker service hands each published ``unknown`` / ``track_ended`` event's
``TrackOutcome`` here:

- an ``unknown`` event keeps the track's best unmatched embeddings (``indexer.unknowns``),
  under the event's id; when the track ends without being named, the entry is refreshed
  with the best faces of the whole track (tracks that never stayed unmatched for
  ``tracker.unknown_after_frames`` frames are noise and are not kept);
- a track that ended recognised may add its best face as an aging template (``indexer.aging``).

Only embeddings are stored, and images only if the user opted in
(``indexer.unknowns.keep_images``): then the unknown entry also keeps the JPEG of the
track's best face that has one (workers attach them to unmatched faces, ``face_crop_jpeg``).
Embeddings are the backbone's (results carry them so); the space named in events may be a
head's, so it is mapped back to its backbone.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from indexer.aging import Recognition, age_templates
from indexer.gallery import Gallery
from indexer.unknowns import UnknownSighting, UnknownStore
from streamer import metrics
from streamer.events import EventType, iso_time
from streamer.tracking import TrackOutcome, face_size_px, frontal_factor
from vigil.config.indexer import IndexerConfig
from vigil.config.streamer import TrackerConfig
from vigil.errors import GalleryError
from vigil.models.head import backbone_of

logger = logging.getLogger(__name__)


class TrackLearning:
    """Keeps unknown tracks and ages templates from the outcomes of published events.

    Args:
        gallery: Where templates, and beside them the unknowns, are stored.
        indexer: The ``indexer`` settings (``unknowns``, ``aging``).
        tracker: The ``streamer.tracker`` settings (``unknown_after_frames``).
    """

    def __init__(self, gallery: Gallery, indexer: IndexerConfig, tracker: TrackerConfig) -> None:
        self.gallery = gallery
        self.config = indexer
        self.tracker = tracker
        self.unknowns = UnknownStore(gallery, indexer.unknowns.retention_s)

    def learn(self, outcome: TrackOutcome) -> None:
        """Act on one outcome; a gallery error is logged and counted, never raised.

        Raises:
            RedisUnavailableError: Redis is down (the tracker service reconnects).
        """
        try:
            result = self._learn(outcome)
        except GalleryError:
            logger.exception("could not learn from event %s", outcome.event.event_id)
            metrics.TRACKS_LEARNED.labels(outcome="failed").inc()
            return
        if result is not None:
            metrics.TRACKS_LEARNED.labels(outcome=result).inc()

    def _learn(self, outcome: TrackOutcome) -> str | None:
        event = outcome.event
        if event.type is EventType.UNKNOWN or (
            event.type is EventType.TRACK_ENDED
            and event.identity_id is None
            and outcome.unmatched_frames >= self.tracker.unknown_after_frames
        ):
            return self._keep_unknown(outcome)
        if event.type is EventType.TRACK_ENDED and event.identity_id is not None:
            if outcome.unknown_event_id is not None:
                # Announced unknown before the votes named them: what was kept of the face (an
                # image too, when opted in) is an enrolled person's now, so it must not linger
                # as a stranger's, out of reach of their erasure.
                self.unknowns.consume_entries([outcome.unknown_event_id])
            return self._age(outcome, event.identity_id)
        return None

    def _keep_unknown(self, outcome: TrackOutcome) -> str | None:
        if not self.config.unknowns.keep or not outcome.unknown_faces:
            return None
        event = outcome.event
        entry_id = outcome.unknown_event_id or event.event_id
        event_ids = list(dict.fromkeys([entry_id, event.event_id]))
        best = outcome.unknown_faces[: self.config.unknowns.per_track]
        image = None
        if self.config.unknowns.keep_images:
            # The best face with a crop: all have one, unless a worker without the opt-in saw some.
            image = next((seen.face.crop_jpeg for seen in best if seen.face.crop_jpeg is not None), None)
        self.unknowns.keep(
            UnknownSighting(
                entry_id=entry_id,
                camera=event.camera,
                track_id=event.track_id,
                captured_at=iso_time(best[0].captured_at),
                embedder_version=backbone_of(event.embedder_version),
                embeddings=np.stack([seen.face.embedding for seen in best]).astype(np.float32),
                qualities=[
                    round(seen.face.detection_score * face_size_px(seen.face) * frontal_factor(seen.face), 2)
                    for seen in best
                ],
                event_ids=event_ids,
            ),
            image,
        )
        return "unknown_kept"

    def _age(self, outcome: TrackOutcome, identity_id: str) -> str | None:
        if outcome.named_face is None:
            return None
        face, captured_at = outcome.named_face
        event = outcome.event
        recognition = Recognition(
            identity_id=identity_id,
            event_id=event.event_id,
            embedder_version=backbone_of(event.embedder_version),
            embedding=face.embedding,
            score=face.score if face.score is not None else -math.inf,
            margin=face.margin if face.margin is not None else -math.inf,  # unknown: no aging
            threshold=event.threshold,
            face_px=face_size_px(face),
            quality=round(face.detection_score * face_size_px(face), 2),
            frames=outcome.frames,
            agreeing_frames=outcome.agreeing_frames,
            captured_at=iso_time(captured_at),
            yaw_deg=None if event.pose is None else event.pose.yaw,
            max_yaw_deg=self.config.max_enrol_yaw_deg,
        )
        added = age_templates(self.gallery, recognition, self.config.aging)
        return None if added is None else "aging_template"
