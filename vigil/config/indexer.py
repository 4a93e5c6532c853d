"""Gallery, enrolment and open-set matching settings."""

from __future__ import annotations

from pydantic import Field

from vigil.config.base import VigilModel


class IndexerConfig(VigilModel):
    """How faces are enrolled and matched against the gallery."""

    match_threshold: float = Field(
        0.92,
        ge=-1.0,
        le=1.0,
        description=(
            "Minimum cosine similarity (higher = stricter) to name a face. Default: the threshold at a "
            "false-accept rate of 1e-3 on LFW View 2 (3,000 impostor pairs, dlib ResNet with mirror "
            "averaging), where 98.1 % of genuine pairs pass."
        ),
    )
    match_margin: float = Field(
        0.02,
        ge=0.0,
        le=2.0,
        description="Minimum lead in cosine similarity over the second-best person (higher = stricter).",
    )
    top_k: int = Field(5, ge=1, le=100, description="Candidate people returned per face.")
    min_face_size_px: int = Field(
        40, ge=8, le=2000, description="Enrolment: smallest accepted face (shorter box side, pixels)."
    )
    min_sharpness: float = Field(
        15.0,
        ge=0.0,
        description=(
            "Enrolment: smallest accepted sharpness (variance of the Laplacian of the face resized to "
            "112 px grey; higher = sharper). Blurred photos make poor templates."
        ),
    )
