"""The age and gender model in force for still images (``vigil analyze``, ``POST /analyze``).

``streamer.tracker.attribute_model`` picks it, as it does for the service's events, so an
image and a camera are described by the same model (in the service a chip travels as JPEG
q95, which moves ages by about 0.1 year on average):

- ``head``: the attribute head in force on each face's embedding (:mod:`vigil.models.attributes`);
- ``fine_tuned``: the promoted fine-tuned copy on each face's dlib-layout chip, cut from the
  image with the face's landmarks (:mod:`vigil.models.attribute_tail`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from vigil.config import Settings
from vigil.models.aligner import FaceAligner
from vigil.models.attribute_tail import AttributeTail, predict_chips
from vigil.models.attributes import AttributeHead, FaceAttributes, attributes_from_outputs, predict_attributes
from vigil.models.dlib_resnet import DlibResNet
from vigil.models.pipeline import Face
from vigil.typing import ImageRGB

logger = logging.getLogger(__name__)


class AttributeModel(Protocol):
    """Age and gender for the faces of one image."""

    @property
    def source(self) -> str:
        """Which model: the artifact's version, or the shipped file."""
        ...

    def estimate(self, image: ImageRGB, faces: Sequence[Face]) -> list[FaceAttributes]: ...


@dataclass(frozen=True)
class HeadAttributes:
    """The head on each face's embedding."""

    head: AttributeHead
    source: str

    def estimate(self, image: ImageRGB, faces: Sequence[Face]) -> list[FaceAttributes]:
        if not faces:
            return []
        return predict_attributes(self.head, np.stack([face.embedding for face in faces]).astype(np.float32))


@dataclass(frozen=True)
class ChipAttributes:
    """The fine-tuned copy on each face's chip."""

    backbone: DlibResNet
    tail: AttributeTail
    aligner: FaceAligner
    source: str

    def estimate(self, image: ImageRGB, faces: Sequence[Face]) -> list[FaceAttributes]:
        if not faces:
            return []
        chips = self.aligner.align(image, np.stack([face.landmarks for face in faces]))
        return attributes_from_outputs(predict_chips(self.backbone, self.tail, chips))


def load_attribute_model(settings: Settings, embedder_version: str) -> AttributeModel:
    """The model ``streamer.tracker.attribute_model`` names.

    Raises:
        ModelLoadError: No usable head for ``embedder_version``, or ``fine_tuned`` without a
            usable promoted copy.
    """
    if settings.streamer.tracker.attribute_model == "fine_tuned":
        from vigil.models.attribute_tail import load_attribute_tail, load_tail_backbone, tail_aligner

        backbone = load_tail_backbone(settings.cache_dir)
        tail, version = load_attribute_tail(settings.home, backbone)
        model: AttributeModel = ChipAttributes(backbone, tail, tail_aligner(settings.aligner), version)
    else:
        from vigil.models.attributes import load_attribute_head

        head, source = load_attribute_head(settings.home, embedder_version)
        model = HeadAttributes(head, source)
    logger.info("age and gender from %s", model.source)
    return model
