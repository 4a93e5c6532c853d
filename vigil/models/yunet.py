"""Face detection with YuNet 2023mar (OpenCV Zoo; MIT), a 230 KB anchor-free detector.

``YunetDetector`` pads each frame to a multiple of 32, runs the network (OpenCV or PyTorch,
``vigil.models.onnx_net``) and decodes its output with ``decode_yunet``, a pure function that
follows OpenCV's ``FaceDetectorYN`` post-processing: for each stride ``s`` in (8, 16, 32) and
each grid cell ``(row, col)``, the score is ``sqrt(cls · obj)``, the box centre
``((col, row) + offset) · s``, its size ``exp(log_size) · s``, and each landmark
``((col, row) + offset) · s``. Overlapping boxes are then suppressed (NMS).

YuNet reads BGR pixels, 0-255, without normalisation, as OpenCV's ``blobFromImage`` gives them.
Its landmarks come as right eye, left eye, nose tip, right and left mouth corner of the
*person*, which is the image-left eye first: ``FaceDetections``' order as it is.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from vigil.config.detector import DetectorConfig
from vigil.models.detector import Detector, FaceDetections, sorted_detections
from vigil.models.device import resolve_device
from vigil.models.model_files import YUNET
from vigil.models.onnx_net import OnnxNet, pick_runtime
from vigil.typing import ImageRGB

logger = logging.getLogger(__name__)

STRIDES = (8, 16, 32)
"""The feature-map strides of YuNet's three heads; the input must be a multiple of the largest."""
OUTPUT_NAMES = tuple(f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps") for stride in STRIDES)
# OpenCV's FaceDetectorYN keeps at most this many boxes before NMS (its default top_k).
_TOP_K = 5000
LARGE_FACE_PASS_PX = 640
"""Frames whose longer side exceeds this get a second pass, shrunk to it, for large faces."""


class YunetDetector(Detector):
    """YuNet face detector.

    Example:
        >>> detector = YunetDetector(DetectorConfig(backend="yunet"), models_dir)
        >>> [faces] = detector.detect([image])
        >>> faces.landmarks.shape
        (1, 5, 2)
    """

    name = "yunet"

    def __init__(self, config: DetectorConfig, models_dir: Path) -> None:
        self.config = config
        self.models_dir = models_dir
        self.device = resolve_device(config.device)
        self.runtime = pick_runtime(config.runtime, self.device)
        # On a CPU, batched frames only cost cache misses (measured: 1280×720 frames take
        # 90-137 ms each in batches of 8 against 27 ms one at a time); the GPU gains from batches.
        self.batch_size = config.batch_size if self.device.type != "cpu" else 1
        self._net: OnnxNet | None = None

    def load(self) -> None:
        """Verify and read ``face_detection_yunet_2023mar.onnx`` from the models directory.

        Raises:
            ModelLoadError: The file is missing, corrupt or cannot be run.
        """
        if self._net is None:
            self._net = OnnxNet.open(self.models_dir, YUNET, OUTPUT_NAMES, self.runtime, self.device)

    def detect_batch(self, batch: ImageRGB) -> list[FaceDetections]:
        height, width = batch.shape[1:3]
        found = self.detect_pass(batch, self.config.min_face_size_px)
        long_side = max(height, width)
        if long_side <= LARGE_FACE_PASS_PX:
            return found
        # YuNet's coarsest stride is 32 px: a face much over ~400 px scores low (a 480 px face in a
        # 2048 px photo: 0.65; the same photo at 640 px: 0.94). A second pass on the frame shrunk
        # to 640 px finds such faces; a face found by both keeps its full-size detection.
        scale = LARGE_FACE_PASS_PX / long_side
        small = np.stack(
            [cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for frame in batch]
        )
        large = self.detect_pass(small, self.config.min_face_size_px * scale)
        return [
            merge_detections(full, _scaled(shrunk, 1 / scale), self.config.nms_iou, width, height)
            for full, shrunk in zip(found, large, strict=True)
        ]

    def detect_pass(self, batch: ImageRGB, min_face_size_px: float) -> list[FaceDetections]:
        """One pass of the network over same-size frames at their own scale, as OpenCV's
        ``FaceDetectorYN`` does (``detect`` adds the large-face pass)."""
        self.load()
        assert self._net is not None
        count, height, width = batch.shape[:3]
        if min(height, width) < min_face_size_px:
            return [FaceDetections.empty() for _ in range(count)]
        padded_height, padded_width = (_round_up(side, STRIDES[-1]) for side in (height, width))
        # (N, H, W, 3) RGB → (N, 3, H', W') BGR float, zero-padded at the bottom and right like OpenCV.
        blob = np.zeros((count, 3, padded_height, padded_width), np.float32)
        blob[:, :, :height, :width] = batch[..., ::-1].transpose(0, 3, 1, 2)
        outputs = self._net.run(blob)
        return [
            decode_yunet(
                [output[index] for output in outputs],
                (padded_height, padded_width),
                (height, width),
                self.config.score_cutoff,
                self.config.nms_iou,
                min_face_size_px,
            )
            for index in range(count)
        ]


def merge_detections(
    full: FaceDetections, shrunk: FaceDetections, nms_iou: float, width: int, height: int
) -> FaceDetections:
    """The faces of the full-size pass, plus those of the shrunk pass that none of them overlaps.

    A face found by both passes keeps its full-size detection: its landmarks are the sharper.
    """
    overlap = _iou_matrix(shrunk.boxes_xyxy, full.boxes_xyxy)
    new = ~(overlap > nms_iou).any(axis=1) if len(full) else np.ones(len(shrunk), bool)
    return sorted_detections(
        np.concatenate([full.boxes_xyxy, shrunk.boxes_xyxy[new]]),
        np.concatenate([full.scores, shrunk.scores[new]]),
        np.concatenate([full.landmarks, shrunk.landmarks[new]]),
        0.0,
        width,
        height,
    )


def _iou_matrix(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``(len(first), len(second))`` intersection over union of corner boxes."""
    top_left = np.maximum(first[:, None, :2], second[None, :, :2])
    bottom_right = np.minimum(first[:, None, 2:], second[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_first = np.prod(first[:, 2:] - first[:, :2], axis=1)
    area_second = np.prod(second[:, 2:] - second[:, :2], axis=1)
    union = area_first[:, None] + area_second[None, :] - intersection
    return np.asarray(intersection / np.maximum(union, 1e-9))


def _scaled(faces: FaceDetections, factor: float) -> FaceDetections:
    return FaceDetections(faces.boxes_xyxy * factor, faces.scores, faces.landmarks * factor)


def decode_yunet(
    outputs: list[npt.NDArray[np.float32]],
    padded_size: tuple[int, int],
    frame_size: tuple[int, int],
    min_score: float,
    nms_iou: float,
    min_face_size_px: float,
) -> FaceDetections:
    """Turn one image's YuNet outputs into detections.

    Args:
        outputs: The 12 outputs in ``OUTPUT_NAMES`` order, without the batch dimension:
            ``cls``/``obj`` ``(cells, 1)``, ``bbox`` ``(cells, 4)``, ``kps`` ``(cells, 10)`` per stride.
        padded_size: ``(height, width)`` of the network input.
        frame_size: ``(height, width)`` of the frame (boxes are clipped to it).
        min_score: Faces scoring less are dropped before NMS.
        nms_iou: NMS overlap threshold.
        min_face_size_px: Boxes whose shorter side is smaller are dropped.
    """
    padded_width = padded_size[1]
    boxes, scores, points = [], [], []
    for position, stride in enumerate(STRIDES):
        cls, obj, bbox, kps = (outputs[position + len(STRIDES) * kind] for kind in range(4))
        columns = padded_width // stride
        cells = np.arange(cls.shape[0])
        grid = np.stack([cells % columns, cells // columns], axis=1).astype(np.float32)  # (cells, 2) x, y
        score = np.sqrt(np.clip(cls[:, 0], 0, 1) * np.clip(obj[:, 0], 0, 1))
        keep = score >= min_score
        if not keep.any():
            continue
        grid, bbox, kps = grid[keep], bbox[keep], kps[keep]
        centre = (grid + bbox[:, :2]) * stride
        size = np.exp(bbox[:, 2:4]) * stride
        boxes.append(np.concatenate([centre - size / 2, size], axis=1))  # x, y, w, h
        scores.append(score[keep])
        points.append((kps.reshape(-1, 5, 2) + grid[:, None, :]) * stride)
    if not boxes:
        return FaceDetections.empty()
    boxes_xywh, all_scores, landmarks = np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)
    chosen = cv2.dnn.NMSBoxes(boxes_xywh.tolist(), all_scores.tolist(), min_score, nms_iou, top_k=_TOP_K)
    kept = np.asarray(chosen, dtype=np.int64).reshape(-1)
    boxes_xywh, all_scores, landmarks = boxes_xywh[kept], all_scores[kept], landmarks[kept]
    big_enough = np.minimum(boxes_xywh[:, 2], boxes_xywh[:, 3]) >= min_face_size_px
    boxes_xywh, all_scores, landmarks = boxes_xywh[big_enough], all_scores[big_enough], landmarks[big_enough]
    corners = np.concatenate([boxes_xywh[:, :2], boxes_xywh[:, :2] + boxes_xywh[:, 2:]], axis=1)
    frame_height, frame_width = frame_size
    return sorted_detections(corners, all_scores, landmarks, min_score, frame_width, frame_height)


def _round_up(value: int, multiple: int) -> int:
    return (value + multiple - 1) // multiple * multiple
