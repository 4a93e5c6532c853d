"""Face detection with MTCNN (facenet-pytorch's networks and weights).

``FaceDetector`` is a thin stateful shell around ``vigil.models.mtcnn.detect_faces``: it
owns the three networks and turns their output into typed ``FaceDetections``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vigil.config.detector import DetectorConfig
from vigil.errors import ModelLoadError
from vigil.models.device import resolve_device
from vigil.models.mtcnn import MtcnnNets, detect_faces
from vigil.typing import BoxesXYXY, ImageRGB, Landmarks5, Scores

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceDetections:
    """The faces found in one frame, best score first.

    Attributes:
        boxes_xyxy: ``(N, 4)`` float32 pixel corners.
        scores: ``(N,)`` float32 face probabilities.
        landmarks: ``(N, 5, 2)`` float32 (x, y) points: left eye, right eye, nose, left and
            right mouth corner (as seen in the image).
    """

    boxes_xyxy: BoxesXYXY
    scores: Scores
    landmarks: Landmarks5

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls) -> FaceDetections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))


class FaceDetector:
    """MTCNN face detector, batched over frames.

    Example:
        >>> detector = FaceDetector(DetectorConfig())
        >>> [faces] = detector.detect([image])
        >>> faces.boxes_xyxy.shape
        (1, 4)
    """

    def __init__(self, config: DetectorConfig) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self._nets: MtcnnNets | None = None

    def load(self) -> None:
        """Build P-, R- and O-Net with the weights that ship inside facenet-pytorch.

        Raises:
            ModelLoadError: facenet-pytorch or its weight files are missing.
        """
        if self._nets is not None:
            return
        try:
            from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

            nets = MtcnnNets.on(self.device, PNet(), RNet(), ONet())
        except (ImportError, OSError, RuntimeError) as exc:
            raise ModelLoadError(
                f"cannot load MTCNN weights from facenet-pytorch ({exc}); reinstall facenet-pytorch==2.5.3"
            ) from None
        self._nets = nets
        logger.info("MTCNN loaded on %s", self.device)

    def detect(self, frames: Sequence[ImageRGB]) -> list[FaceDetections]:
        """Find faces in each frame.

        Frames of equal size are batched together (``config.batch_size`` at a time);
        frames of other sizes form their own batches.

        Args:
            frames: RGB frames, ``(H, W, 3)`` uint8 each.

        Returns:
            One ``FaceDetections`` per frame, in input order.
        """
        self.load()
        results: list[FaceDetections | None] = [None] * len(frames)
        for indices in _batches_by_size(frames, self.config.batch_size):
            batch = np.stack([frames[i] for i in indices])
            for index, faces in zip(indices, self._detect_batch(batch), strict=True):
                results[index] = faces
        return [faces if faces is not None else FaceDetections.empty() for faces in results]

    def _detect_batch(self, batch: ImageRGB) -> list[FaceDetections]:
        assert self._nets is not None
        height, width = batch.shape[1:3]
        if min(height, width) < self.config.min_face_size_px:
            return [FaceDetections.empty() for _ in range(len(batch))]
        with torch.inference_mode():
            found = detect_faces(
                batch,
                self._nets,
                self.config.min_face_size_px,
                self.config.thresholds,
                self.config.scale_factor,
            )
        return [
            _to_detections(boxes, points, self.config.min_score, width, height) for boxes, points in found
        ]


def _batches_by_size(frames: Sequence[ImageRGB], batch_size: int) -> list[list[int]]:
    """Group frame indices by frame shape, then cut each group into batches."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, frame in enumerate(frames):
        groups.setdefault(frame.shape, []).append(index)
    return [
        indices[start : start + batch_size]
        for indices in groups.values()
        for start in range(0, len(indices), batch_size)
    ]


def _to_detections(
    boxes: np.ndarray, points: np.ndarray, min_score: float, width: int, height: int
) -> FaceDetections:
    """Filter by score, clip boxes to the frame and sort best first."""
    if len(boxes) == 0:
        return FaceDetections.empty()
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 5)
    points = np.asarray(points, dtype=np.float32).reshape(-1, 5, 2)
    keep = boxes[:, 4] >= min_score
    boxes, points = boxes[keep], points[keep]
    order = np.argsort(-boxes[:, 4], kind="stable")
    boxes, points = boxes[order], points[order]
    corners = boxes[:, :4].copy()
    corners[:, [0, 2]] = corners[:, [0, 2]].clip(0, width)
    corners[:, [1, 3]] = corners[:, [1, 3]].clip(0, height)
    return FaceDetections(corners, boxes[:, 4].copy(), points)
