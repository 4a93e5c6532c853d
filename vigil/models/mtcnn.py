"""The MTCNN cascade (P-Net → R-Net → O-Net) as one pure function, resampled with OpenCV.

facenet-pytorch's ``detect_face`` resamples every pyramid level and every candidate crop
with ``torch.nn.functional.interpolate(mode="area")``; on a CPU that takes over half of the
detection time (measured: ~15 of 29 s over 5 calls on a 512×512 frame). The reference
MTCNN resamples with OpenCV's ``INTER_AREA``, which is what this does, on uint8 frames.
The box arithmetic (regression, squaring, clipping, the three NMS passes and their
thresholds) is facenet-pytorch's own, imported from it, so the detections agree with it
to within resampling differences (a test checks this on real photos).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
import torch
from torchvision.ops import batched_nms

from vigil.typing import ImageRGB

# MTCNN's networks see 12, 24 and 48 pixel squares; inputs are scaled to about [-1, 1].
PNET_CELL_PX = 12
RNET_INPUT_PX = 24
ONET_INPUT_PX = 48
_PIXEL_MEAN = 127.5
_PIXEL_SCALE = 0.0078125  # 1/128
# NMS overlap thresholds of the reference implementation.
_NMS_PER_SCALE = 0.5
_NMS_ACROSS_SCALES = 0.7
_NMS_FINAL = 0.7


@dataclass(frozen=True)
class MtcnnNets:
    """The three MTCNN networks, already on their device."""

    pnet: torch.nn.Module
    rnet: torch.nn.Module
    onet: torch.nn.Module
    device: torch.device


def pyramid_scales(height: int, width: int, min_face_size_px: int, scale_factor: float) -> list[float]:
    """Scales at which P-Net's 12 px window covers faces from ``min_face_size_px`` up to the frame."""
    scale = PNET_CELL_PX / min_face_size_px
    side = min(height, width) * scale
    scales = []
    while side >= PNET_CELL_PX:
        scales.append(scale)
        scale *= scale_factor
        side *= scale_factor
    return scales


def detect_faces(
    frames: ImageRGB,
    nets: MtcnnNets,
    min_face_size_px: int,
    thresholds: tuple[float, float, float],
    scale_factor: float,
) -> list[tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]:
    """Run the cascade on a batch of equal-size frames.

    Args:
        frames: ``(N, H, W, 3)`` uint8 RGB.
        nets: The networks.
        min_face_size_px: Smallest face side searched for.
        thresholds: P-, R- and O-Net probability thresholds.
        scale_factor: Pyramid step.

    Returns:
        Per frame, ``(boxes, points)``: ``(K, 5)`` float32 ``x1, y1, x2, y2, score`` and
        ``(K, 5, 2)`` float32 landmarks.
    """
    count, _height, _width = frames.shape[:3]
    boxes, frame_index = _propose(frames, nets, min_face_size_px, thresholds[0], scale_factor)
    if len(boxes):
        boxes, frame_index = _refine(frames, nets, boxes, frame_index, thresholds[1])
    points = torch.zeros(0, 5, 2)
    if len(boxes):
        boxes, frame_index, points = _output(frames, nets, boxes, frame_index, thresholds[2])
    boxes_np = boxes[:, :5].cpu().numpy().astype(np.float32) if len(boxes) else np.zeros((0, 5), np.float32)
    points_np = points.cpu().numpy().astype(np.float32)
    index_np = frame_index.cpu().numpy() if len(boxes) else np.zeros(0, np.int64)
    return [(boxes_np[index_np == i], points_np[index_np == i]) for i in range(count)]


def _to_input(pixels: npt.NDArray[np.uint8], device: torch.device) -> torch.Tensor:
    """``(N, h, w, 3)`` uint8 → ``(N, 3, h, w)`` float32 normalised network input."""
    tensor = torch.from_numpy(np.ascontiguousarray(pixels)).to(device).permute(0, 3, 1, 2).float()
    return (tensor - _PIXEL_MEAN) * _PIXEL_SCALE


def _propose(
    frames: ImageRGB, nets: MtcnnNets, min_face_size_px: int, threshold: float, scale_factor: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 1: P-Net over the image pyramid; returns squared candidate boxes and their frame index."""
    # Imported here, not at module level: importing facenet_pytorch installs global warning filters.
    from facenet_pytorch.models.utils.detect_face import generateBoundingBox, rerec

    height, width = frames.shape[1:3]
    all_boxes, all_index = [], []
    for scale in pyramid_scales(height, width, min_face_size_px, scale_factor):
        size = (int(width * scale + 1), int(height * scale + 1))
        level = np.stack([cv2.resize(frame, size, interpolation=cv2.INTER_AREA) for frame in frames])
        regression, probabilities = nets.pnet(_to_input(level, nets.device))
        boxes, index = generateBoundingBox(regression, probabilities[:, 1], scale, threshold)
        keep = batched_nms(boxes[:, :4], boxes[:, 4], index, _NMS_PER_SCALE)
        all_boxes.append(boxes[keep])
        all_index.append(index[keep])
    if not all_boxes:
        return torch.zeros(0, 9), torch.zeros(0, dtype=torch.long)
    boxes, index = torch.cat(all_boxes), torch.cat(all_index)
    keep = batched_nms(boxes[:, :4], boxes[:, 4], index, _NMS_ACROSS_SCALES)
    boxes, index = boxes[keep], index[keep]
    box_width = boxes[:, 2] - boxes[:, 0]
    box_height = boxes[:, 3] - boxes[:, 1]
    refined = torch.stack(
        [
            boxes[:, 0] + boxes[:, 5] * box_width,
            boxes[:, 1] + boxes[:, 6] * box_height,
            boxes[:, 2] + boxes[:, 7] * box_width,
            boxes[:, 3] + boxes[:, 8] * box_height,
            boxes[:, 4],
        ],
        dim=1,
    )
    return rerec(refined), index


def _crops(frames: ImageRGB, boxes: torch.Tensor, index: torch.Tensor, side_px: int) -> npt.NDArray[np.uint8]:
    """Cut each box (clipped to its frame) and resize it to ``side_px`` squared."""
    from facenet_pytorch.models.utils.detect_face import pad

    height, width = frames.shape[1:3]
    top, bottom, left, right = pad(boxes, width, height)
    frame_of = index.cpu().numpy()
    crops = np.zeros((len(boxes), side_px, side_px, 3), np.uint8)
    for k in range(len(boxes)):
        if bottom[k] > top[k] - 1 and right[k] > left[k] - 1:
            patch = frames[frame_of[k], top[k] - 1 : bottom[k], left[k] - 1 : right[k]]
            crops[k] = cv2.resize(patch, (side_px, side_px), interpolation=cv2.INTER_AREA)
    return crops


def _refine(
    frames: ImageRGB, nets: MtcnnNets, boxes: torch.Tensor, index: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 2: R-Net rescoring and box regression."""
    from facenet_pytorch.models.utils.detect_face import bbreg, rerec

    regression, probabilities = nets.rnet(_to_input(_crops(frames, boxes, index, RNET_INPUT_PX), nets.device))
    score = probabilities[:, 1]
    passed = score > threshold
    boxes = torch.cat([boxes[passed, :4], score[passed, None]], dim=1)
    index, regression = index[passed], regression[passed]
    keep = batched_nms(boxes[:, :4], boxes[:, 4], index, _NMS_ACROSS_SCALES)
    return rerec(bbreg(boxes[keep], regression[keep])), index[keep]


def _output(
    frames: ImageRGB, nets: MtcnnNets, boxes: torch.Tensor, index: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stage 3: O-Net final score, box and the 5 landmarks."""
    from facenet_pytorch.models.utils.detect_face import batched_nms_numpy, bbreg

    regression, landmarks, probabilities = nets.onet(
        _to_input(_crops(frames, boxes, index, ONET_INPUT_PX), nets.device)
    )
    score = probabilities[:, 1]
    passed = score > threshold
    boxes = torch.cat([boxes[passed, :4], score[passed, None]], dim=1)
    index, regression, landmarks = index[passed], regression[passed], landmarks[passed]
    # Landmarks come relative to the (pre-regression) box: x in columns 0-4, y in 5-9.
    box_width = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
    box_height = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
    points_x = box_width * landmarks[:, :5] + boxes[:, 0:1] - 1
    points_y = box_height * landmarks[:, 5:] + boxes[:, 1:2] - 1
    points = torch.stack([points_x, points_y], dim=2)
    boxes = bbreg(boxes, regression)
    keep = batched_nms_numpy(boxes[:, :4], boxes[:, 4], index, _NMS_FINAL, "Min")
    return boxes[keep], index[keep], points[keep]
