"""Age and gender for tracks: the attribute head in force, applied to a track's recent faces.

The tracker asks once per track (at its first ``recognized`` or ``unknown`` event), so the
cost is one small forward pass per visit, not one per frame. The head reads backbone
embeddings, which every face result carries whatever head the search used.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from streamer.events import EventAttributes
from vigil.errors import ModelLoadError
from vigil.models.head import backbone_of

if TYPE_CHECKING:
    from vigil.models.attributes import AttributeHead

logger = logging.getLogger(__name__)


class TrackAttributes:
    """Estimates age and gender from a track's embeddings (an ``AttributeEstimate`` for the tracker).

    The head is loaded on first use for each backbone; when none can be loaded the events
    carry no attributes and the reason is logged once.

    Example:
        >>> estimate = TrackAttributes(settings.home)
        >>> estimate(embeddings, "dlib_resnet_v1+flip").gender
        'female'
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self._heads: dict[str, AttributeHead | None] = {}

    def __call__(self, embeddings: np.ndarray, space_version: str) -> EventAttributes | None:
        from vigil.models.attributes import track_attributes

        head = self._head(backbone_of(space_version))
        if head is None or len(embeddings) == 0:
            return None
        found = track_attributes(head, np.asarray(embeddings, dtype=np.float32))
        return EventAttributes(
            age=round(found.age, 1),
            age_range=list(found.age_range),
            gender=found.gender,
            gender_confidence=round(found.gender_confidence, 3),
        )

    def _head(self, backbone: str) -> AttributeHead | None:
        if backbone not in self._heads:
            from vigil.models.attributes import load_attribute_head

            try:
                head, source = load_attribute_head(self.home, backbone)
                logger.info("age and gender from attribute head %s", source)
            except ModelLoadError as exc:
                head = None
                logger.warning("events carry no age and gender: %s", exc)
            self._heads[backbone] = head
        return self._heads[backbone]
