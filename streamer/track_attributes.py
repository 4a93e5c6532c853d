"""Age and gender for tracks, once per track (at its first ``recognized`` or ``unknown`` event).

Two models, chosen by ``streamer.tracker.attribute_model``:

- ``head`` (:class:`TrackAttributes`): the attribute head in force on the track's recent
  backbone embeddings, which every face result carries whatever head the search used: one
  small forward pass per visit;
- ``fine_tuned`` (:class:`TrackChipAttributes`): the promoted fine-tuned copy of the dlib
  ResNet's last blocks (:mod:`vigil.models.attribute_tail`) on the track's best aligned chips,
  which the workers then send with every face: the frozen blocks and the copy run on those
  few chips and their mirror images, once per visit.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from streamer.analysis import decode_jpeg
from streamer.events import EventAttributes
from vigil.config import Settings
from vigil.errors import ModelLoadError
from vigil.models.dlib_resnet import CHIP_SIZE_PX
from vigil.models.head import backbone_of

_CHIP_SHAPE = (CHIP_SIZE_PX, CHIP_SIZE_PX, 3)

if TYPE_CHECKING:
    from vigil.models.attribute_tail import AttributeTail
    from vigil.models.attributes import AttributeHead, FaceAttributes
    from vigil.models.dlib_resnet import DlibResNet

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
        return event_attributes(track_attributes(head, np.asarray(embeddings, dtype=np.float32)))

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


class TrackChipAttributes:
    """Estimates age and gender from a track's aligned chips (a ``ChipAttributeEstimate`` for the tracker).

    The backbone and the promoted fine-tuned copy load on first use. The workers refuse to
    start without a usable copy, so a failure here (the artifact removed mid-run) leaves events
    without attributes and is logged once.

    Example:
        >>> estimate = TrackChipAttributes(settings)
        >>> estimate([chip_jpeg_1, chip_jpeg_2]).age_range
        [27, 41]
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._model: tuple[DlibResNet, AttributeTail] | None = None
        self._failed = False

    def __call__(self, chips: list[bytes]) -> EventAttributes | None:
        from vigil.models.attribute_tail import track_attributes_from_chips

        model = self._loaded()
        # A chip of another size (a hand-written or foreign entry) is skipped, never run.
        decoded = [chip for chip in map(decode_jpeg, chips) if chip is not None and chip.shape == _CHIP_SHAPE]
        if model is None or not decoded:
            return None
        backbone, tail = model
        try:
            found = track_attributes_from_chips(backbone, tail, np.stack(decoded))
        except (RuntimeError, ValueError) as exc:  # the tracker serves every camera: never let it die here
            logger.warning("no age and gender for a track: the fine-tuned model failed (%s)", exc)
            return None
        return event_attributes(found)

    def _loaded(self) -> tuple[DlibResNet, AttributeTail] | None:
        if self._model is None and not self._failed:
            from vigil.models.attribute_tail import load_attribute_tail, load_tail_backbone

            try:
                backbone = load_tail_backbone(self.settings.cache_dir)
                tail, version = load_attribute_tail(self.settings.home, backbone)
                self._model = (backbone, tail)
                logger.info("age and gender from fine-tuned attribute model %s", version)
            except ModelLoadError as exc:
                self._failed = True
                logger.warning("events carry no age and gender: %s", exc)
        return self._model


def event_attributes(found: FaceAttributes) -> EventAttributes:
    """An event's ``attributes`` from a model's answer (rounded for the wire)."""
    return EventAttributes(
        age=round(found.age, 1),
        age_range=list(found.age_range),
        gender=found.gender,
        gender_confidence=round(found.gender_confidence, 3),
    )
