"""The per-contender tally of ``vigil bench stream``, shared by both sides (and light to import)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FramesTally:
    """What a face pipeline found on a run of frames, and what it cost (both sides of ``vigil bench stream``).

    Attributes:
        frames: Frames processed.
        seconds: Wall-clock time spent analysing them (not producing them).
        cpu_seconds: Process CPU time over the same spans (``time.process_time``), every
            thread counted.
        names: For every enrolled name, the number of frames on which at least one face was
            matched to it (0 when never).
        faces: Faces detected, over all frames.
        unknown_faces: Detected faces named nobody.
        faces_embedded: Faces given a forward pass of the embedder; the others took the
            embedding of the same still face in an earlier frame (``embedder.still_faces``).
    """

    frames: int
    seconds: float
    cpu_seconds: float
    names: dict[str, int]
    faces: int
    unknown_faces: int
    faces_embedded: int

    @property
    def fps(self) -> float:
        """Frames per wall-clock second (0 when nothing was timed)."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_seconds_per_frame(self) -> float:
        """CPU seconds per frame (0 for an empty run): the cost that does not depend on load."""
        return self.cpu_seconds / self.frames if self.frames else 0.0

    @property
    def found(self) -> frozenset[str]:
        """The names found on at least one frame."""
        return frozenset(name for name, frames in self.names.items() if frames > 0)
