"""Face alignment settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vigil.config.base import VigilModel


class AlignerConfig(VigilModel):
    """How a detected face becomes a chip for the embedder (the chip size is the embedder's)."""

    method: Literal["similarity"] = Field(
        "similarity",
        description=(
            "`similarity`: least-squares similarity transform from the 5 MTCNN landmarks to a template."
        ),
    )
    padding: float = Field(
        0.25,
        ge=0.0,
        le=1.0,
        description="Margin around the face, as a fraction of the face (dlib convention).",
    )
