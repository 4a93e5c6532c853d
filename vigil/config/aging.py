"""Template aging settings: when a confident recognition in the stream becomes a new template."""

from __future__ import annotations

from pydantic import Field

from vigil.config.base import VigilModel


class AgingConfig(VigilModel):
    """Let a person's templates follow them over time (audited in `vigil people history`)."""

    enabled: bool = Field(
        False,
        description=(
            "Age templates for everyone. Off: only for people opted in with `vigil people aging NAME on`."
        ),
    )
    extra_score: float = Field(
        0.02,
        ge=0.0,
        le=1.0,
        description=(
            "The track's best face must reach the match threshold in force plus this much cosine "
            "similarity (higher = stricter): only clear recognitions teach the gallery."
        ),
    )
    min_margin: float = Field(
        0.05,
        ge=0.0,
        le=2.0,
        description=(
            "Smallest lead in cosine similarity of that face over the second-best person (higher = "
            "stricter); with one person enrolled the lead is unbounded."
        ),
    )
    min_face_px: int = Field(
        60, ge=8, le=2000, description="Smallest face (shorter box side, pixels) that may become a template."
    )
    min_track_frames: int = Field(
        3,
        ge=1,
        le=1000,
        description=(
            "Frames the track must last; every one of them must have named the same person (confirmed "
            "over the whole track, none unknown or someone else)."
        ),
    )
    max_templates: int = Field(
        10,
        ge=1,
        le=1000,
        description=(
            "Aging templates kept per person; beyond this the oldest aging template is removed (the "
            "gallery follows the person, enrolment templates are never touched)."
        ),
    )
    max_similarity: float = Field(
        0.97,
        ge=-1.0,
        le=1.0,
        description=(
            "Skip a face whose cosine similarity to one of the person's templates is above this: a "
            "near-duplicate adds nothing but weight (keeps the templates diverse)."
        ),
    )
