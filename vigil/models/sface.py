"""SFace 2021dec (OpenCV Zoo; Apache-2.0): a MobileFaceNet trained with the SFace loss, 128-d.

It reads 112×112 chips in the ArcFace layout (``vigil.models.aligner``), RGB, 0-255: the
``(x − 127.5) / 128`` scaling is the graph's first two nodes. This is what OpenCV's
``FaceRecognizerSF.feature`` feeds it (``blobFromImage(..., swapRB=true)`` on a BGR chip); the
parity test holds our embeddings to OpenCV's. The output is not unit-norm (see ``Embedder``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from vigil.config.embedder import EmbedderConfig
from vigil.models.aligner import ARCFACE_CHIP_SIZE_PX
from vigil.models.device import resolve_device
from vigil.models.embedder import Embedder, check_chips
from vigil.models.model_files import SFACE
from vigil.models.onnx_net import OnnxNet, pick_runtime
from vigil.typing import Embeddings, ImageRGB

logger = logging.getLogger(__name__)

SFACE_VERSION = "sface_2021dec"
_OUTPUT = "fc1"
_CPU_CHIPS_PER_BATCH = 8


class SFaceEmbedder(Embedder):
    """SFace embeddings, batched on the torch runtime.

    Args:
        config: ``embedder`` settings (``device``, ``runtime``, ``batch_size``, ``mirror_average``).
        models_dir: Where ``face_recognition_sface_2021dec.onnx`` is installed.
    """

    name = "sface"
    dim = 128
    chip_size_px = ARCFACE_CHIP_SIZE_PX
    chip_layout = "arcface"

    def __init__(self, config: EmbedderConfig, models_dir: Path) -> None:
        self.models_dir = models_dir
        self.device = resolve_device(config.device)
        self.runtime = pick_runtime(config.runtime, self.device)
        self.batch_size = config.batch_size
        self.flip_average = config.mirror_average
        self.version = SFACE_VERSION + ("+flip" if self.flip_average else "")
        self._net: OnnxNet | None = None

    def load(self) -> None:
        """Verify and read ``face_recognition_sface_2021dec.onnx`` from the models directory.

        Raises:
            ModelLoadError: The file is missing, corrupt or cannot be run.
        """
        if self._net is None:
            self._net = OnnxNet.open(self.models_dir, SFACE, [_OUTPUT], self.runtime, self.device)

    def embed(self, chips: ImageRGB) -> Embeddings:
        """Embed a batch of chips.

        Args:
            chips: ``(N, 112, 112, 3)`` uint8 RGB chips in the ArcFace layout.

        Returns:
            ``(N, 128)`` float32 embeddings (``(0, 128)`` for an empty batch).

        Raises:
            ValueError: ``chips`` has the wrong shape or dtype.
        """
        check_chips(chips, self.chip_size_px)
        self.load()
        assert self._net is not None
        embeddings = np.empty((len(chips), self.dim), np.float32)
        # A CPU is memory-bound on big batches (as for dlib's ResNet): small ones stay in cache.
        step = min(self.batch_size, _CPU_CHIPS_PER_BATCH) if self.device.type == "cpu" else self.batch_size
        for start in range(0, len(chips), step):
            batch = chips[start : start + step].transpose(0, 3, 1, 2).astype(np.float32)
            if self.flip_average:
                batch = np.concatenate([batch, batch[..., ::-1]])
            [output] = self._net.run(np.ascontiguousarray(batch))
            if self.flip_average:
                # Each half is normalised first so the average weighs both views alike.
                unit = output / np.linalg.norm(output, axis=1, keepdims=True).clip(1e-12)
                output = (unit[: len(unit) // 2] + unit[len(unit) // 2 :]) / 2
            embeddings[start : start + len(output)] = output
        return embeddings
