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
import torch.nn.functional as F
from torchvision.ops import batched_nms, roi_align

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
# On a CPU the networks are memory-bound: they run fastest laid out channels-last, on slices
# small enough for their activations to stay in the L2 cache. Measured on this project's 2-core
# machine: 1,500 R-Net crops took 392 ms in one NCHW batch and 63 ms in channels-last slices of
# 32 (O-Net 5× faster likewise); P-Net on 8 frames of 384×216, 57 ms at once, 37 ms frame by frame.
_CPU_CROPS_PER_SLICE = 32
_CPU_FRAMES_PER_SLICE = 1


@dataclass(frozen=True)
class MtcnnNets:
    """The three MTCNN networks, already on their device and in channels-last layout."""

    pnet: torch.nn.Module
    rnet: torch.nn.Module
    onet: torch.nn.Module
    device: torch.device

    @classmethod
    def on(
        cls, device: torch.device, pnet: torch.nn.Module, rnet: torch.nn.Module, onet: torch.nn.Module
    ) -> MtcnnNets:
        """The networks moved to ``device`` in eval mode, channels-last (2-3× faster on a CPU)."""
        pnet, rnet, onet = (
            net.to(device).to(memory_format=torch.channels_last).eval() for net in (pnet, rnet, onet)
        )
        return cls(pnet, rnet, onet, device)


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
    resample_on_device: bool | None = None,
) -> list[tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]:
    """Run the cascade on a batch of equal-size frames.

    Args:
        frames: ``(N, H, W, 3)`` uint8 RGB.
        nets: The networks.
        min_face_size_px: Smallest face side searched for.
        thresholds: P-, R- and O-Net probability thresholds.
        scale_factor: Pyramid step.
        resample_on_device: Build the pyramid and cut the candidates with torch on the
            networks' device rather than with OpenCV (None: on any device but the CPU).

    Returns:
        Per frame, ``(boxes, points)``: ``(K, 5)`` float32 ``x1, y1, x2, y2, score`` and
        ``(K, 5, 2)`` float32 landmarks.
    """
    count = len(frames)
    on_device = nets.device.type != "cpu" if resample_on_device is None else resample_on_device
    pixels = _Pixels(frames, nets.device, on_device)
    boxes, frame_index = _propose(pixels, nets, min_face_size_px, thresholds[0], scale_factor)
    if len(boxes):
        boxes, frame_index = _refine(pixels, nets, boxes, frame_index, thresholds[1])
    points = torch.zeros(0, 5, 2)
    if len(boxes):
        boxes, frame_index, points = _output(pixels, nets, boxes, frame_index, thresholds[2])
    boxes_np = boxes[:, :5].cpu().numpy().astype(np.float32) if len(boxes) else np.zeros((0, 5), np.float32)
    points_np = points.cpu().numpy().astype(np.float32)
    index_np = frame_index.cpu().numpy() if len(boxes) else np.zeros(0, np.int64)
    return [(boxes_np[index_np == i], points_np[index_np == i]) for i in range(count)]


class _Pixels:
    """The frames, resampled for the networks.

    On a CPU with OpenCV's ``INTER_AREA`` on the uint8 arrays. On a GPU the batch is uploaded
    once and the pyramid levels (area interpolation) and candidate crops (``roi_align``, which
    averages several samples per output pixel, like an area resize) are made there: with
    OpenCV on a GPU machine's CPU they took 94 % of the detection time (measured on 8 frames
    of 1280×720 on an H100: 565 ms for the pyramid and 262 ms for the crops per batch, 27 ms
    for the three networks).
    """

    def __init__(self, frames: ImageRGB, device: torch.device, on_device: bool) -> None:
        self.frames = frames
        self.device = device
        self.height, self.width = frames.shape[1:3]
        self._tensor = (
            _as_tensor(frames, device).permute(0, 3, 1, 2).float().contiguous() if on_device else None
        )

    def level(self, width: int, height: int) -> torch.Tensor:
        """The frames resized to ``width`` × ``height``, as normalised network input."""
        if self._tensor is None:
            resized = [
                cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA) for frame in self.frames
            ]
            return _to_input(np.stack(resized), self.device)
        return _normalise(F.interpolate(self._tensor, size=(height, width), mode="area"))

    def crops(self, boxes: torch.Tensor, index: torch.Tensor, side_px: int) -> torch.Tensor:
        """Each box (clipped to its frame) resized to ``side_px`` squared, as normalised network input."""
        if self._tensor is None:
            return _to_input(_crops(self.frames, boxes, index, side_px), self.device)
        return _normalise(_crops_on_device(self._tensor, boxes, index, side_px))


def _to_input(pixels: npt.NDArray[np.uint8], device: torch.device) -> torch.Tensor:
    """``(N, h, w, 3)`` uint8 → ``(N, 3, h, w)`` float32 normalised network input, channels-last.

    The permuted view of NHWC pixels already is channels-last, so no copy reorders them.
    """
    return _normalise(_as_tensor(pixels, device).permute(0, 3, 1, 2).float())


def _as_tensor(pixels: npt.NDArray[np.uint8], device: torch.device) -> torch.Tensor:
    """The array on ``device``, without a copy where torch can share it (writable and contiguous)."""
    if not (pixels.flags.writeable and pixels.flags.c_contiguous):
        pixels = np.array(pixels)
    return torch.from_numpy(pixels).to(device)


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    """0-255 float pixels → network input (about -1 to 1), channels-last."""
    return ((pixels - _PIXEL_MEAN) * _PIXEL_SCALE).contiguous(memory_format=torch.channels_last)


def _run(net: torch.nn.Module, inputs: torch.Tensor, cpu_slice: int) -> tuple[torch.Tensor, ...]:
    """Run a network over a batch: in slices of ``cpu_slice`` on a CPU, all at once elsewhere."""
    if inputs.device.type != "cpu" or len(inputs) <= cpu_slice:
        return tuple(net(inputs))
    parts = [net(part) for part in torch.split(inputs, cpu_slice)]
    return tuple(torch.cat(outputs) for outputs in zip(*parts, strict=True))


def _propose(
    pixels: _Pixels, nets: MtcnnNets, min_face_size_px: int, threshold: float, scale_factor: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 1: P-Net over the image pyramid; returns squared candidate boxes and their frame index."""
    # Imported here, not at module level: importing facenet_pytorch installs global warning filters.
    from facenet_pytorch.models.utils.detect_face import generateBoundingBox, rerec

    height, width = pixels.height, pixels.width
    all_boxes, all_index = [], []
    for scale in pyramid_scales(height, width, min_face_size_px, scale_factor):
        # Every level from the frame itself: resampling each from the one before is 2.4× faster
        # with OpenCV but moved landmarks enough to spoil alignment of a rotated face (test_aligner).
        level = pixels.level(int(width * scale + 1), int(height * scale + 1))
        regression, probabilities = _run(nets.pnet, level, _CPU_FRAMES_PER_SLICE)
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


def _crops_on_device(
    frames: torch.Tensor, boxes: torch.Tensor, index: torch.Tensor, side_px: int
) -> torch.Tensor:
    """``_crops`` with torch: ``frames`` ``(N, 3, H, W)`` float; returns ``(K, 3, side, side)`` float.

    The boxes are clipped as facenet-pytorch's ``pad`` does (1-based, inclusive), so the region
    of a box is columns ``x - 1 .. ex - 1``; ``aligned=True`` puts pixel ``i`` at ``[i, i + 1)``.
    """
    height, width = frames.shape[2:]
    corners = boxes[:, :4].trunc()
    left = corners[:, 0].clamp(min=1) - 1
    top = corners[:, 1].clamp(min=1) - 1
    right = corners[:, 2].clamp(max=width)
    bottom = corners[:, 3].clamp(max=height)
    regions = torch.stack([index.to(frames.dtype), left, top, right, bottom], dim=1)
    crops: torch.Tensor = roi_align(
        frames, regions, (side_px, side_px), spatial_scale=1.0, sampling_ratio=-1, aligned=True
    )
    empty = (right <= left) | (bottom <= top)
    crops[empty] = 0.0
    return crops


def _refine(
    pixels: _Pixels, nets: MtcnnNets, boxes: torch.Tensor, index: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 2: R-Net rescoring and box regression."""
    from facenet_pytorch.models.utils.detect_face import bbreg, rerec

    crops = pixels.crops(boxes, index, RNET_INPUT_PX)
    regression, probabilities = _run(nets.rnet, crops, _CPU_CROPS_PER_SLICE)
    score = probabilities[:, 1]
    passed = score > threshold
    boxes = torch.cat([boxes[passed, :4], score[passed, None]], dim=1)
    index, regression = index[passed], regression[passed]
    keep = batched_nms(boxes[:, :4], boxes[:, 4], index, _NMS_ACROSS_SCALES)
    return rerec(bbreg(boxes[keep], regression[keep])), index[keep]


def _output(
    pixels: _Pixels, nets: MtcnnNets, boxes: torch.Tensor, index: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stage 3: O-Net final score, box and the 5 landmarks."""
    from facenet_pytorch.models.utils.detect_face import batched_nms_numpy, bbreg

    crops = pixels.crops(boxes, index, ONET_INPUT_PX)
    regression, landmarks, probabilities = _run(nets.onet, crops, _CPU_CROPS_PER_SLICE)
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
