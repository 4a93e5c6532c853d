"""Face alignment: a similarity warp from the detector's 5 landmarks to the embedder's chip layout.

Two layouts exist (``Embedder.chip_layout``):

- ``dlib`` (dlib's ResNet, 150×150): described below.
- ``arcface`` (SFace and the ArcFace family, 112×112): the five reference points of
  insightface's ``arcface_dst``, as OpenCV's ``FaceRecognizerSF.alignCrop`` uses them. These
  models were trained on chips cut by fitting the landmarks onto the template (image → chip),
  so that is the direction fitted here too; the chips then match OpenCV's.

The dlib layout:

dlib's ResNet was trained on chips cut by ``dlib.get_face_chip(size=150, padding=0.25)``
around dlib's own 5-point landmarks. MTCNN's 5 points are different points (eye centres
and mouth corners rather than eye corners and the nose base), so we warp them onto
``MTCNN_TEMPLATE_150``: the mean position, in dlib chip pixels, of MTCNN's landmarks on
chips cut by dlib's own pipeline. ``trainer/align_template.py`` measured it on LFW
View-1 training images; BENCHMARKS.md records how each alignment scores on LFW.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from vigil.config.aligner import AlignerConfig
from vigil.typing import ImageRGB, Landmarks5

# Where MTCNN's landmarks (left eye, right eye, nose, left mouth corner, right mouth
# corner) sit on a 150×150, padding-0.25 dlib chip: the mean over 1,904 LFW View-1
# training faces, fitted by `python -m trainer.align_template --limit 2000`. Spread
# (std, px): eyes ~1.9, nose ~6 (it moves with head yaw), mouth ~5.
MTCNN_TEMPLATE_150: npt.NDArray[np.float64] = np.array(
    [
        [47.91, 46.08],
        [102.21, 46.00],
        [74.50, 78.06],
        [50.89, 105.49],
        [99.08, 105.41],
    ]
)
_TEMPLATE_SIZE_PX = 150
_TEMPLATE_PADDING = 0.25

# insightface's arcface_dst: left eye, right eye, nose, left and right mouth corner (as seen
# in the image) on a 112×112 chip; OpenCV's face_recognize.cpp has the same numbers.
ARCFACE_TEMPLATE_112: npt.NDArray[np.float64] = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)
ARCFACE_CHIP_SIZE_PX = 112

ChipLayout = Literal["dlib", "arcface"]

AffineMatrix = npt.NDArray[np.float64]  # (2, 3): [A | t], x_out = A @ x_in + t


def template_for(chip_size_px: int, padding: float) -> npt.NDArray[np.float64]:
    """Rescale ``MTCNN_TEMPLATE_150`` to another chip size and padding.

    dlib maps chip pixel 0 and S−1 to the edges of the padded face box, so positions
    scale about the chip centre ``(S − 1) / 2`` by ``(1 + 2·padding)``.
    """
    centre_150 = (_TEMPLATE_SIZE_PX - 1) / 2
    face_units = (MTCNN_TEMPLATE_150 - centre_150) / (_TEMPLATE_SIZE_PX - 1) * (1 + 2 * _TEMPLATE_PADDING)
    centre = (chip_size_px - 1) / 2
    return face_units / (1 + 2 * padding) * (chip_size_px - 1) + centre


def similarity_transform(source: npt.NDArray[np.float64], target: npt.NDArray[np.float64]) -> AffineMatrix:
    """Least-squares similarity transform (rotation, uniform scale, shift) from source to target.

    Umeyama's closed form, without reflection.

    Args:
        source: ``(K, 2)`` points.
        target: ``(K, 2)`` points, same order.

    Returns:
        ``(2, 3)`` matrix M with ``target ≈ M[:, :2] @ source + M[:, 2]``.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centred, target_centred = source - source_mean, target - target_mean
    covariance = target_centred.T @ source_centred / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ sign @ vt
    variance = (source_centred**2).sum() / len(source)
    scale = float((singular * np.diag(sign)).sum() / variance) if variance > 0 else 1.0
    shift = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, shift[:, None]])


def warp_chip(image: ImageRGB, chip_to_image: AffineMatrix, chip_size_px: int) -> ImageRGB:
    """Cut a square chip out of ``image``; ``chip_to_image`` maps chip pixels to image pixels."""
    chip = cv2.warpAffine(
        image,
        chip_to_image,
        (chip_size_px, chip_size_px),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    return np.ascontiguousarray(chip, dtype=np.uint8)


class FaceAligner:
    """Turns detector landmarks into embedder chips.

    Args:
        config: Alignment settings (``padding`` applies to the dlib layout).
        chip_size_px: The embedder's chip side.
        layout: The embedder's chip layout.

    Example:
        >>> chips = FaceAligner(AlignerConfig(), chip_size_px=150).align(image, faces.landmarks)
        >>> chips.shape
        (1, 150, 150, 3)
    """

    def __init__(self, config: AlignerConfig, chip_size_px: int, layout: ChipLayout = "dlib") -> None:
        self.config = config
        self.chip_size_px = chip_size_px
        self.layout = layout
        self.template: npt.NDArray[np.float64] = (
            template_for(chip_size_px, config.padding)
            if layout == "dlib"
            else ARCFACE_TEMPLATE_112 * float(chip_size_px / ARCFACE_CHIP_SIZE_PX)
        )

    def chip_to_image(self, landmarks: npt.NDArray[np.floating]) -> AffineMatrix:
        """The transform that maps chip pixels onto the image for one face's ``(5, 2)`` landmarks."""
        points = np.asarray(landmarks, dtype=np.float64)
        if self.layout == "dlib":
            return similarity_transform(self.template, points)
        return np.asarray(cv2.invertAffineTransform(similarity_transform(points, self.template)), np.float64)

    def align(self, image: ImageRGB, landmarks: Landmarks5) -> ImageRGB:
        """Cut one chip per face.

        Args:
            image: ``(H, W, 3)`` uint8 RGB frame.
            landmarks: ``(N, 5, 2)`` landmarks in that frame (``FaceDetections``' order).

        Returns:
            ``(N, S, S, 3)`` uint8 RGB chips, ``S = chip_size_px``.
        """
        size = self.chip_size_px
        chips = np.zeros((len(landmarks), size, size, 3), dtype=np.uint8)
        for index, points in enumerate(landmarks):
            chips[index] = warp_chip(image, self.chip_to_image(points), size)
        return chips
