"""Face detector settings (MTCNN or YuNet)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from vigil.config.base import VigilModel

Device = Literal["auto", "cpu", "cuda"]
OnnxRuntime = Literal["auto", "opencv", "torch"]
"""How an ONNX model (YuNet, SFace) runs: ``opencv`` is OpenCV's DNN engine (CPU, one image at
a time), ``torch`` our PyTorch port of the graph (batched, CPU or CUDA); ``auto`` picks OpenCV
on the CPU, where it is faster, and PyTorch on CUDA."""
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
DetectorBackend = Literal["mtcnn", "yunet"]

# YuNet scores a clear 3/4-profile face 0.85-0.87 where MTCNN gives 0.99+ (hamilton.mp4):
# one cut-off for both would drop such faces from YuNet (see BENCHMARKS.md).
DEFAULT_MIN_SCORE: dict[DetectorBackend, float] = {"mtcnn": 0.9, "yunet": 0.7}


class DetectorConfig(VigilModel):
    """Face detection settings.

    ``mtcnn`` runs three networks (P-, R-, O-Net), each with its own confidence threshold
    (``thresholds``, ``scale_factor`` apply to it only); ``yunet`` is one small network
    (``nms_iou``, ``runtime`` apply to it only). Both give boxes, scores and 5 landmarks.
    """

    backend: DetectorBackend = Field(
        "yunet",
        description=(
            "`mtcnn`: MTCNN (weights ship in facenet-pytorch); `yunet`: YuNet 2023mar "
            "(ONNX file installed by `vigil models install-pack`)."
        ),
    )
    runtime: OnnxRuntime = Field(
        "auto",
        description="YuNet only: `auto`, `opencv` (CPU) or `torch` (CPU or CUDA, batched).",
    )
    nms_iou: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description=(
            "YuNet only: boxes overlapping a better one by more than this IoU are dropped "
            "(0-1, lower = fewer overlapping boxes)."
        ),
    )
    device: Device = Field("auto", description="Where to run: `auto` picks CUDA when available, else CPU.")
    min_face_size_px: int = Field(
        20,
        ge=8,
        le=1024,
        description=(
            "Smallest face side to look for, in pixels. MTCNN: larger values are faster (fewer "
            "pyramid scales); YuNet: smaller boxes are dropped."
        ),
    )
    thresholds: tuple[Probability, Probability, Probability] = Field(
        (0.6, 0.7, 0.7),
        description="MTCNN only: P-Net, R-Net, O-Net face probability thresholds (0-1, higher = stricter).",
    )
    scale_factor: float = Field(
        0.709,
        gt=0.3,
        lt=0.95,
        description=(
            "MTCNN only: image pyramid step (`factor`); smaller is faster but can miss faces between scales."
        ),
    )
    min_score: Probability | None = Field(
        None,
        description=(
            "Face score below which a detection is dropped (0-1, higher = stricter). Unset: "
            "0.9 for MTCNN, 0.7 for YuNet, whose scores run lower on the same faces."
        ),
    )
    batch_size: int = Field(16, ge=1, le=512, description="Frames per detector batch.")

    @property
    def score_cutoff(self) -> float:
        """``min_score``, or the backend's default when it is unset."""
        return self.min_score if self.min_score is not None else DEFAULT_MIN_SCORE[self.backend]
