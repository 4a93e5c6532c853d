"""Which faces of a batch are the same picture as one already embedded (``embedder.still_faces``).

A batch of consecutive frames from one camera often shows a face that has not moved: the
same landmarks and, once aligned, nearly the same pixels. Its embedding would differ from
the earlier one's by no more than the model's own jitter between frames, so the pipeline
embeds it once. The rule is a pure function of the aligned chips and their landmarks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from vigil.config.still_faces import StillFacesConfig
from vigil.typing import ImageRGB, Landmarks5


def still_face_sources(
    chips: ImageRGB,
    landmarks: Landmarks5,
    sizes_px: npt.NDArray[np.float32],
    scenes: Sequence[str],
    frames: Sequence[int],
    config: StillFacesConfig,
) -> list[int | None]:
    """For each face, the earlier face whose embedding it may take, or None to embed it.

    Only faces that will be embedded are sources, so a face that drifts slowly is embedded
    again once it has moved past the limits (reused embeddings never chain).

    Args:
        chips: ``(N, S, S, 3)`` uint8 RGB aligned chips, in frame order.
        landmarks: ``(N, 5, 2)`` float32 landmarks of the same faces in their frames.
        sizes_px: ``(N,)`` each face's shorter box side in pixels.
        scenes: Each face's camera: faces of different cameras never share an embedding.
        frames: Each face's frame in the batch: faces of one frame never share one either.
        config: The limits.

    Returns:
        ``N`` entries: the index of an earlier face, or None.
    """
    count = len(chips)
    if not (len(landmarks) == len(sizes_px) == len(scenes) == len(frames) == count):
        raise ValueError("chips, landmarks, sizes, scenes and frames must describe the same faces")
    sources: list[int | None] = [None] * count
    if not config.enabled:
        return sources
    embedded: list[int] = []
    for face in range(count):
        candidates = [
            earlier
            for earlier in embedded
            if scenes[earlier] == scenes[face] and frames[earlier] != frames[face]
        ]
        if not candidates:
            embedded.append(face)
            continue
        shifts = np.linalg.norm(landmarks[candidates] - landmarks[face], axis=2).max(axis=1)
        near = [
            c
            for c, shift in zip(candidates, shifts, strict=True)
            if shift <= config.max_landmark_shift * max(float(sizes_px[face]), 1.0)
        ]
        best_difference = config.max_pixel_difference
        for earlier in near:
            difference = float(np.abs(chips[earlier].astype(np.int16) - chips[face]).mean())
            if difference <= best_difference:
                best_difference, sources[face] = difference, earlier
        if sources[face] is None:
            embedded.append(face)
    return sources
