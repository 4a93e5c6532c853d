"""Still-face settings: when a face is the same picture as one embedded a moment earlier."""

from __future__ import annotations

from pydantic import Field

from vigil.config.base import VigilModel


class StillFacesConfig(VigilModel):
    """Embed a face that has not moved once, not on every frame of a batch.

    A worker's batch often holds consecutive frames of one camera in which a seated face has
    not moved. When a face's five landmarks lie within ``max_landmark_shift`` of an earlier
    face's of the same camera in the batch, and their aligned chips differ by at most
    ``max_pixel_difference``, it takes that face's embedding instead of another forward pass.
    On hamilton.mp4 analysed at its full 30 fps this skips 28 % of the embedding passes, and a
    reused embedding lies 0.90-0.99 in cosine similarity from the one the face would have had:
    SFace's own jitter between frames of a still face (BENCHMARKS.md, "Stream"). The tracker
    counts a reused embedding like the frame's own (one vote toward ``tracker.min_votes``): the
    picture is the same, and a fresh pass would only add that jitter. The service's events on
    the clip analysed at 30 fps are the same with it on and off.
    """

    enabled: bool = Field(
        True,
        description=(
            "Reuse the embedding of a face that has not moved since an earlier frame of its camera in "
            "the same worker batch (28 % fewer embedding passes on a clip analysed at 30 fps, about 4 % "
            "at 5 fps)."
        ),
    )
    max_landmark_shift: float = Field(
        0.02,
        ge=0.0,
        le=0.2,
        description=(
            "Largest distance any of the five landmarks may have moved, as a fraction of the face's "
            "shorter box side (lower = stricter)."
        ),
    )
    max_pixel_difference: float = Field(
        2.0,
        ge=0.0,
        le=255.0,
        description=(
            "Largest mean absolute difference between the two aligned chips, in 8-bit grey levels "
            "per channel (lower = stricter; 2 is about JPEG's own noise)."
        ),
    )
