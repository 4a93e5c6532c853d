"""Face detection with MTCNN (facenet-pytorch's networks and weights).

``MtcnnDetector`` is a thin stateful shell around ``vigil.models.mtcnn.detect_faces``: it
owns the three networks and turns their output into typed ``FaceDetections``.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from vigil.config.detector import DetectorConfig
from vigil.errors import ModelLoadError
from vigil.models.detector import Detector, FaceDetections, sorted_detections
from vigil.models.device import resolve_device
from vigil.models.mtcnn import MtcnnNets, detect_faces
from vigil.typing import ImageRGB

logger = logging.getLogger(__name__)


class MtcnnDetector(Detector):
    """MTCNN face detector, batched over frames.

    Example:
        >>> detector = MtcnnDetector(DetectorConfig(backend="mtcnn"))
        >>> [faces] = detector.detect([image])
        >>> faces.boxes_xyxy.shape
        (1, 4)
    """

    name = "mtcnn"

    def __init__(self, config: DetectorConfig) -> None:
        self.config = config
        self.batch_size = config.batch_size
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

    def detect_batch(self, batch: ImageRGB) -> list[FaceDetections]:
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
            _to_detections(boxes, points, self.config.score_cutoff, width, height) for boxes, points in found
        ]


def _to_detections(
    boxes: np.ndarray, points: np.ndarray, min_score: float, width: int, height: int
) -> FaceDetections:
    """MTCNN's ``(N, 5)`` boxes-with-score and ``(N, 5, 2)`` points as sorted detections."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 5)
    return sorted_detections(boxes[:, :4], boxes[:, 4], points, min_score, width, height)
