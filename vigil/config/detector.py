"""Face detector settings (MTCNN)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from vigil.config.base import VigilModel

Device = Literal["auto", "cpu", "cuda"]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class DetectorConfig(VigilModel):
    """MTCNN detection settings.

    MTCNN runs three networks (P-, R-, O-Net); each has its own confidence threshold.
    """

    device: Device = Field("auto", description="Where to run: `auto` picks CUDA when available, else CPU.")
    min_face_size_px: int = Field(
        20,
        ge=8,
        le=1024,
        description=(
            "Smallest face side to look for, in pixels. Larger values are faster (fewer pyramid scales)."
        ),
    )
    thresholds: tuple[Probability, Probability, Probability] = Field(
        (0.6, 0.7, 0.7),
        description="P-Net, R-Net, O-Net face probability thresholds (0-1, higher = stricter).",
    )
    scale_factor: float = Field(
        0.709,
        gt=0.3,
        lt=0.95,
        description=(
            "Image pyramid step (MTCNN's `factor`); smaller is faster but can miss faces between scales."
        ),
    )
    min_score: float = Field(
        0.9,
        ge=0.0,
        le=1.0,
        description="Final face probability below which a detection is dropped (0-1, higher = stricter).",
    )
    batch_size: int = Field(16, ge=1, le=512, description="Frames per detector batch.")
