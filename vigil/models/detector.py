"""The detector interface: frames in, boxes, scores and 5 landmarks per face out.

Two backends implement it: ``MtcnnDetector`` (``vigil.models.mtcnn_detector``) and
``YunetDetector`` (``vigil.models.yunet``); ``vigil.models.registry.create_detector`` builds the
one the settings name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vigil.typing import BoxesXYXY, ImageRGB, Landmarks5, Scores


@dataclass(frozen=True)
class FaceDetections:
    """The faces found in one frame, best score first.

    Attributes:
        boxes_xyxy: ``(N, 4)`` float32 pixel corners, clipped to the frame.
        scores: ``(N,)`` float32 face scores (0-1; each backend's own confidence).
        landmarks: ``(N, 5, 2)`` float32 (x, y) points: left eye, right eye, nose, left and
            right mouth corner (left/right as seen in the image, i.e. the person's right eye
            first). Every backend returns this order; the aligner relies on it.
    """

    boxes_xyxy: BoxesXYXY
    scores: Scores
    landmarks: Landmarks5

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls) -> FaceDetections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))


class Detector(ABC):
    """Finds faces in frames.

    Subclasses are cheap to construct; ``load()`` reads the weights (explicitly, so a
    constructor never touches disk). ``detect`` loads on first use.

    Attributes:
        name: Backend name, e.g. ``mtcnn``.
        batch_size: Frames per ``detect_batch`` call.
        device: Where the network runs.
    """

    name: str
    device: torch.device

    @abstractmethod
    def load(self) -> None:
        """Read the weights and move the network to its device; a second call does nothing.

        Raises:
            ModelLoadError: The weights are missing or corrupt.
        """

    batch_size: int

    def detect(self, frames: Sequence[ImageRGB]) -> list[FaceDetections]:
        """Find faces in each frame.

        Frames of equal size are batched together (``batch_size`` at a time); frames of
        other sizes form their own batches.

        Args:
            frames: RGB frames, ``(H, W, 3)`` uint8 each.

        Returns:
            One ``FaceDetections`` per frame, in input order, with faces below the configured
            ``min_score`` or smaller than ``min_face_size_px`` left out.
        """
        self.load()
        results: list[FaceDetections | None] = [None] * len(frames)
        for indices in batches_by_size(frames, self.batch_size):
            batch = np.stack([frames[i] for i in indices])
            for index, faces in zip(indices, self.detect_batch(batch), strict=True):
                results[index] = faces
        return [faces if faces is not None else FaceDetections.empty() for faces in results]

    @abstractmethod
    def detect_batch(self, batch: ImageRGB) -> list[FaceDetections]:
        """Find faces in a batch of equally sized frames (the weights are loaded).

        Args:
            batch: ``(N, H, W, 3)`` uint8 RGB frames.
        """


def batches_by_size(frames: Sequence[ImageRGB], batch_size: int) -> list[list[int]]:
    """Group frame indices by frame shape, then cut each group into batches."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, frame in enumerate(frames):
        groups.setdefault(frame.shape, []).append(index)
    return [
        indices[start : start + batch_size]
        for indices in groups.values()
        for start in range(0, len(indices), batch_size)
    ]


def sorted_detections(
    boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray, min_score: float, width: int, height: int
) -> FaceDetections:
    """Keep the faces scoring ``min_score`` or more, best first, boxes clipped to the frame.

    Args:
        boxes: ``(N, 4)`` pixel corners.
        scores: ``(N,)`` face scores.
        landmarks: ``(N, 5, 2)`` points, in ``FaceDetections``' order.
    """
    if len(scores) == 0:
        return FaceDetections.empty()
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    landmarks = np.asarray(landmarks, dtype=np.float32).reshape(-1, 5, 2)
    keep = scores >= min_score
    boxes, scores, landmarks = boxes[keep], scores[keep], landmarks[keep]
    order = np.argsort(-scores, kind="stable")
    corners = boxes[order].copy()
    corners[:, [0, 2]] = corners[:, [0, 2]].clip(0, width)
    corners[:, [1, 3]] = corners[:, [1, 3]].clip(0, height)
    return FaceDetections(corners, scores[order].copy(), landmarks[order].copy())
