"""Gallery, enrolment and open-set matching settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from vigil.config.aging import AgingConfig
from vigil.config.base import VigilModel
from vigil.config.unknowns import UnknownsConfig


class IndexerConfig(VigilModel):
    """How faces are enrolled and matched against the gallery."""

    match_threshold: float | None = Field(
        None,
        ge=-1.0,
        le=1.0,
        description=(
            "Minimum cosine similarity (higher = stricter) to name a face. Unset: taken from the "
            "calibration file (see calibration_file), whose shipped default was fitted on LFW."
        ),
    )
    match_margin: float | None = Field(
        None,
        ge=0.0,
        le=2.0,
        description=(
            "Minimum lead in cosine similarity over the second-best person (higher = stricter). "
            "Unset: taken from the calibration file."
        ),
    )
    target_fpir: float = Field(
        0.01,
        gt=0.0,
        lt=1.0,
        description=(
            "Which calibrated operating point to use: the share of strangers' faces that may be taken "
            "for an enrolled person (false-positive identification rate, per face searched). The "
            "shipped calibration holds 0.01 (balanced; the tracker also needs two agreeing frames "
            "per visit) and 0.001 (strict)."
        ),
    )
    calibration_file: Path | None = Field(
        None,
        description=(
            "Calibration JSON to take the thresholds from. Unset: $VIGIL_HOME/calibration/current.json "
            "(written by the trainer) when present, else the default shipped for the embedder. "
            "Re-read when it changes, without a restart."
        ),
    )
    keep_sources: bool = Field(
        False,
        description=(
            "Keep a copy of each accepted enrolment photo under $VIGIL_HOME/sources, so `vigil gallery "
            "reembed` can build templates for a new embedder. Off: only embeddings are stored (privacy)."
        ),
    )
    faiss_device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description=(
            "Where searches run: `auto` uses a GPU when FAISS was built with GPU support (the `gpu` "
            "extra) and sees one, else the CPU."
        ),
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
    max_enrol_yaw_deg: float = Field(
        45.0,
        ge=0.0,
        le=90.0,
        description=(
            "Enrolment: largest accepted head yaw (degrees turned left or right, from the 5 landmarks; "
            "higher = more lenient). Profiles make poor templates for the frontal faces cameras see."
        ),
    )
    warn_enrol_yaw_deg: float = Field(
        25.0,
        ge=0.0,
        le=90.0,
        description="Enrolment: warn about an accepted photo whose head yaw exceeds this (degrees).",
    )
    unknowns: UnknownsConfig = Field(default_factory=UnknownsConfig)
    aging: AgingConfig = Field(default_factory=AgingConfig)
