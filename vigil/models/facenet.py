"""facenet-pytorch's InceptionResnetV1 (512-d) as a Vigil embedder, from a local weights file.

facenet-pytorch would download its VGGFace2/CASIA weights at construction; Vigil never
downloads, so the network is built empty and the state dict comes from
``embedder.weights_path``.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import struct
from pathlib import Path

import numpy as np
import torch

from vigil.config.detector import Device
from vigil.errors import ModelLoadError
from vigil.models.device import resolve_device
from vigil.models.embedder import Embedder, check_chips
from vigil.typing import Embeddings, ImageRGB

logger = logging.getLogger(__name__)

FACENET_CHIP_SIZE_PX = 160


class FacenetEmbedder(Embedder):
    """InceptionResnetV1 on 160×160 chips; outputs are L2-normalised (the network does it)."""

    name = "facenet"
    dim = 512
    chip_size_px = FACENET_CHIP_SIZE_PX

    def __init__(self, weights_path: Path, device: Device = "auto", batch_size: int = 32) -> None:
        self.weights_path = Path(weights_path)
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.version = "facenet_unloaded"
        self._net: torch.nn.Module | None = None

    def load(self) -> None:
        if self._net is not None:
            return
        from facenet_pytorch import InceptionResnetV1

        try:
            data = self.weights_path.read_bytes()
        except OSError as exc:
            raise ModelLoadError(
                f"cannot read facenet weights {self.weights_path} ({exc.strerror}); set embedder.weights_path"
            ) from None
        try:
            state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
            net = InceptionResnetV1(pretrained=None, classify=False)
            # The logits layer is only used for classification; checkpoints may or may not carry it.
            state = {key: value for key, value in state.items() if not key.startswith("logits.")}
            net.load_state_dict(state, strict=False)
            missing = (
                set(net.state_dict()) - set(state) - {k for k in net.state_dict() if k.startswith("logits.")}
            )
        # torch.load reports a non-checkpoint file in many ways, depending on where the bytes break.
        except (
            RuntimeError,
            OSError,
            ValueError,
            AttributeError,
            EOFError,
            pickle.UnpicklingError,
            struct.error,
        ) as exc:
            raise ModelLoadError(
                f"{self.weights_path} is not an InceptionResnetV1 state dict ({exc})"
            ) from None
        if missing:
            raise ModelLoadError(
                f"{self.weights_path} lacks {len(missing)} InceptionResnetV1 tensors "
                f"(e.g. {sorted(missing)[0]})"
            )
        self._net = net.to(self.device).eval()
        self.version = f"facenet_{hashlib.sha256(data).hexdigest()[:12]}"
        logger.info("facenet InceptionResnetV1 loaded from %s on %s", self.weights_path, self.device)

    def embed(self, chips: ImageRGB) -> Embeddings:
        check_chips(chips, self.chip_size_px)
        self.load()
        assert self._net is not None
        outputs = [np.zeros((0, self.dim), np.float32)]
        with torch.inference_mode():
            for start in range(0, len(chips), self.batch_size):
                batch = torch.from_numpy(chips[start : start + self.batch_size]).to(self.device)
                # facenet-pytorch's fixed_image_standardization: (x − 127.5) / 128.
                tensor = (batch.permute(0, 3, 1, 2).float() - 127.5) / 128.0
                outputs.append(self._net(tensor).float().cpu().numpy())
        return np.concatenate(outputs).astype(np.float32)
