"""What age and gender cost in the service, per model: part of ``vigil bench stream``.

The two models of ``streamer.tracker.attribute_model`` spend in different places:

- ``head``: nothing in the workers; in the tracker, once per track, the head on the track's
  recent embeddings (``RECENT_EMBEDDINGS``);
- ``fine_tuned``: in the workers, for every face of every frame, a dlib-layout chip cut and
  JPEG-encoded (its bytes written to Redis beside the result, until the tracker reads and
  deletes them); in the tracker, once per track, decoding the
  track's best chips (``ATTRIBUTE_FACES``), the frozen blocks and the fine-tuned copy on each
  and its mirror image.

Method: the faces are the real ones the pipeline finds in the benchmark's frames; each
per-face step is timed over all of them, each per-track step ``TRACK_REPEATS`` times on
real faces, with ``perf_counter``, in the benchmark's process (torch on its default threads,
as the tracker runs). The fine-tuned copy is the one promoted in the caller's home, or else an
untrained copy of the last 4 blocks: the cost does not depend on what it learned.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from streamer.analysis import chip_jpeg, decode_jpeg
from streamer.track_attributes import TrackAttributes
from streamer.tracking import ATTRIBUTE_FACES, RECENT_EMBEDDINGS
from vigil.config import Settings
from vigil.errors import ModelLoadError
from vigil.models.attribute_tail import (
    AttributeTail,
    load_attribute_tail,
    load_tail_backbone,
    tail_aligner,
    track_attributes_from_chips,
)
from vigil.models.dlib_resnet import DlibResNet
from vigil.models.pipeline import FacePipeline
from vigil.typing import ImageRGB

logger = logging.getLogger(__name__)

TRACK_REPEATS = 20
MAX_FRAMES = 40
"""Frames of the benchmark's to find faces in: enough faces for stable per-face figures."""
UNTRAINED_BLOCKS = 4


@dataclass(frozen=True)
class AttributeCost:
    """Milliseconds each attribute model costs, and where.

    Attributes:
        faces: Real faces the per-face figures were timed on.
        chip_ms_per_face: Worker, ``fine_tuned`` only: cut one chip and encode it as JPEG.
        chip_bytes_per_face: Mean size of that JPEG: what each face keeps in Redis until the
            tracker has read it.
        head_ms_per_track: Tracker, ``head``: the head on a track's recent embeddings.
        tail_ms_per_track: Tracker, ``fine_tuned``: decode a track's best chips, then the frozen
            blocks and the copy on each and its mirror image.
        tail: Which copy was timed.
        torch_threads: torch's threads while timing.
    """

    faces: int
    chip_ms_per_face: float
    chip_bytes_per_face: float
    head_ms_per_track: float | None
    tail_ms_per_track: float
    tail: str
    torch_threads: int

    def to_markdown(self) -> list[str]:
        head = "n/a" if self.head_ms_per_track is None else f"{self.head_ms_per_track:.1f}"
        return [
            "### Age and gender: cost per model",
            "",
            "| where | `head` | `fine_tuned` |",
            "| --- | ---: | ---: |",
            f"| worker, per face and frame: chip cut + JPEG (ms) | 0 | {self.chip_ms_per_face:.2f} |",
            f"| Redis, per face and frame, until the tracker reads it (bytes) | 0 "
            f"| {self.chip_bytes_per_face:,.0f} |",
            f"| tracker, once per track (ms) | {head} | {self.tail_ms_per_track:.1f} |",
            "",
            f"{self.faces} real faces of the clip; per-track figures are medians of {TRACK_REPEATS} runs "
            f"({RECENT_EMBEDDINGS} embeddings for the head, {ATTRIBUTE_FACES} chips for the fine-tuned "
            f"copy: {self.tail}); torch on {self.torch_threads} thread(s).",
        ]


def measure_attribute_cost(
    settings: Settings, pipeline: FacePipeline, frames: Sequence[ImageRGB], tail_home: Path
) -> AttributeCost | None:
    """Time both models on the real faces of ``frames`` (None when they hold no face).

    Args:
        settings: For the aligner, the attribute head's home and the converted-weights cache.
        pipeline: Loaded; finds the faces.
        frames: The benchmark's frames (the first ``MAX_FRAMES`` are used).
        tail_home: Where a promoted fine-tuned copy may be (the caller's ``VIGIL_HOME``).
    """
    faces = [
        (frame, face)
        for frame, found in zip(frames[:MAX_FRAMES], pipeline.analyze(list(frames[:MAX_FRAMES])), strict=True)
        for face in found
    ]
    if not faces:
        return None
    aligner = tail_aligner(settings.aligner)
    started = time.perf_counter()
    jpegs = [chip_jpeg(aligner.align(frame, face.landmarks[None])[0]) for frame, face in faces]
    chip_ms = (time.perf_counter() - started) * 1000 / len(faces)
    chips = [jpeg for jpeg in jpegs if jpeg is not None]
    backbone = load_tail_backbone(settings.cache_dir)
    tail, source = _tail(tail_home, backbone)

    def tail_once(index: int) -> None:
        picked = [chips[(index + k) % len(chips)] for k in range(ATTRIBUTE_FACES)]
        decoded = np.stack([chip for chip in map(decode_jpeg, picked) if chip is not None])
        track_attributes_from_chips(backbone, tail, decoded)

    embeddings = np.stack([face.embedding for _, face in faces])
    head = TrackAttributes(settings.home)

    def head_once(index: int) -> None:
        picked = embeddings[[(index + k) % len(embeddings) for k in range(RECENT_EMBEDDINGS)]]
        head(picked, pipeline.embedder.version)

    head_ms: float | None = _median_ms(head_once)
    if head(embeddings[:1], pipeline.embedder.version) is None:
        head_ms = None  # no head for this embedder: nothing was computed
    return AttributeCost(
        faces=len(faces),
        chip_ms_per_face=round(chip_ms, 3),
        chip_bytes_per_face=round(sum(map(len, chips)) / max(len(chips), 1), 1),
        head_ms_per_track=None if head_ms is None else round(head_ms, 2),
        tail_ms_per_track=round(_median_ms(tail_once), 2),
        tail=source,
        torch_threads=torch.get_num_threads(),
    )


def _tail(home: Path, backbone: DlibResNet) -> tuple[AttributeTail, str]:
    """The promoted copy, or an untrained one of the size BENCHMARKS.md measures."""
    try:
        tail, version = load_attribute_tail(home, backbone)
        return tail, f"promoted {version}, last {tail.copied_blocks} blocks"
    except ModelLoadError:
        return AttributeTail(backbone, UNTRAINED_BLOCKS).eval(), f"untrained, last {UNTRAINED_BLOCKS} blocks"


def _median_ms(run: Callable[[int], None]) -> float:
    """Median wall milliseconds of ``run(index)`` over ``TRACK_REPEATS`` calls, after one untimed."""
    run(0)  # warm-up: first calls allocate
    timings = []
    for index in range(TRACK_REPEATS):
        started = time.perf_counter()
        run(index)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)
