"""Detector speed: MTCNN (ours and facenet-pytorch's ``detect_face``) and YuNet, side by side.

Four contenders run on the same frames at the same batch sizes:

- ``mtcnn``: Vigil's MTCNN cascade (:class:`~vigil.models.mtcnn_detector.MtcnnDetector`);
- ``facenet``: facenet-pytorch's ``detect_face`` on the same three networks with the same
  thresholds. The two differ in how the pyramid and the candidate crops are resampled (OpenCV
  ``INTER_AREA`` on uint8 versus ``torch.nn.functional.interpolate(mode="area")``);
- ``yunet_opencv`` and ``yunet_torch``: :class:`~vigil.models.yunet.YunetDetector` on
  OpenCV's DNN engine (one frame per call, the CPU default) and on our PyTorch port of the
  graph (batched).

Timings are interleaved rounds after a warm-up (``time_round_robin``), so load on the machine
hits every contender alike; within a round each contender runs once untimed right before its
timed call (``SETTLE_RUNS``), so it is timed back to back as on consecutive frames of a stream,
not in the wake of another library's thread pool. Each figure is the median milliseconds per
frame. Beside each timing is the number of faces that detector finds in one frame (score ≥ each
family's default ``min_score``: 0.9 for MTCNN, 0.7 for YuNet), and each row gives the speed-ups
MTCNN/facenet and YuNet/MTCNN.
Frames come from photos that ship in PyPI packages, so no dataset is needed; YuNet's ONNX file
comes from the models directory (``vigil models install-pack``).
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch

from trainer.bench_embed import time_round_robin
from trainer.report import JsonValue
from vigil.config import DetectorConfig
from vigil.config.detector import OnnxRuntime
from vigil.machine import cpu_model
from vigil.models.detector import Detector
from vigil.models.mtcnn_detector import MtcnnDetector
from vigil.models.yunet import YunetDetector
from vigil.samples import sample_images
from vigil.typing import ImageRGB

logger = logging.getLogger(__name__)

Contender = Literal["mtcnn", "facenet", "yunet_opencv", "yunet_torch"]
CONTENDERS: tuple[Contender, ...] = ("mtcnn", "facenet", "yunet_opencv", "yunet_torch")
LABELS: dict[Contender, str] = {
    "mtcnn": "Vigil MTCNN",
    "facenet": "facenet-pytorch detect_face",
    "yunet_opencv": "Vigil YuNet (opencv)",
    "yunet_torch": "Vigil YuNet (torch)",
}
YUNET_RUNTIMES: dict[Contender, OnnxRuntime] = {"yunet_opencv": "opencv", "yunet_torch": "torch"}

SETTLE_RUNS = 1
"""Untimed calls before each timed one (see ``time_round_robin``): without it, YuNet on OpenCV ran
straight after facenet-pytorch's torch calls and measured 9.6 instead of 6.0 ms per 640×360
frame on the 2-core machine, while MTCNN was unaffected."""

TARGET_FRAMES = "640×360 frame"
"""The frame size issue #12's speed target is stated for."""
TARGET_YUNET_SPEEDUP = 4.0
"""Issue #12's target: YuNet at least this many times faster than MTCNN per 640×360 frame on a CPU."""


@dataclass(frozen=True)
class ContenderTiming:
    """One detector on one frame at one batch size.

    Attributes:
        contender: Which detector (``CONTENDERS``).
        ms_per_frame: Median milliseconds per frame over the rounds.
        faces: Faces it finds in one copy of the frame.
    """

    contender: Contender
    ms_per_frame: float
    faces: int


@dataclass(frozen=True)
class DetectRow:
    """Every contender on one frame at one batch size.

    Attributes:
        frames: Which frame (a key of :func:`bench_frames`).
        width: Frame width, pixels.
        height: Frame height, pixels.
        batch: Frames per call.
        timings: One per contender, in ``CONTENDERS`` order.
    """

    frames: str
    width: int
    height: int
    batch: int
    timings: tuple[ContenderTiming, ...]

    def timing(self, contender: Contender) -> ContenderTiming:
        """The timing of ``contender``.

        Raises:
            KeyError: ``contender`` was not run.
        """
        for timing in self.timings:
            if timing.contender == contender:
                return timing
        raise KeyError(contender)

    def speedup(self, contender: Contender, baseline: Contender) -> float:
        """How many times faster ``contender`` is than ``baseline`` (ms ratio baseline / contender)."""
        return self.timing(baseline).ms_per_frame / self.timing(contender).ms_per_frame


@dataclass(frozen=True)
class DetectBenchResult:
    """What :func:`run_detect_bench` measured.

    Attributes:
        rows: One per frame and batch size.
        repeats: Timed rounds (after one warm-up).
        min_scores: The face-score cut-off of each family (``mtcnn``, ``yunet``).
        min_face_size_px: The smallest face size both families looked for.
        torch_threads: ``torch.get_num_threads()`` (OpenCV is given the same number).
        cpu_model: From ``/proc/cpuinfo``.
        torch_version: ``torch.__version__``.
        opencv_version: ``cv2.__version__``.
    """

    rows: tuple[DetectRow, ...]
    repeats: int
    min_scores: dict[str, float]
    min_face_size_px: int
    torch_threads: int
    cpu_model: str
    torch_version: str
    opencv_version: str

    def to_dict(self) -> dict[str, JsonValue]:
        """A JSON-ready dictionary: context, the target, and per row each detector's ms/frame and faces."""
        return {
            "machine": self.cpu_model,
            "torch_threads": self.torch_threads,
            "torch_version": self.torch_version,
            "opencv_version": self.opencv_version,
            "repeats": self.repeats,
            "min_score": {family: cutoff for family, cutoff in self.min_scores.items()},
            "min_face_size_px": self.min_face_size_px,
            "target": {"frames": TARGET_FRAMES, "yunet_speedup_vs_mtcnn": TARGET_YUNET_SPEEDUP},
            "rows": [
                {
                    "frames": row.frames,
                    "width": row.width,
                    "height": row.height,
                    "batch": row.batch,
                    "detectors": {
                        timing.contender: {
                            "ms_per_frame": round(timing.ms_per_frame, 2),
                            "faces": timing.faces,
                        }
                        for timing in row.timings
                    },
                    "speedup": {
                        "mtcnn_vs_facenet": round(row.speedup("mtcnn", "facenet"), 2),
                        "yunet_opencv_vs_mtcnn": round(row.speedup("yunet_opencv", "mtcnn"), 2),
                        "yunet_torch_vs_mtcnn": round(row.speedup("yunet_torch", "mtcnn"), 2),
                    },
                }
                for row in self.rows
            ],
        }

    def to_markdown(self) -> str:
        """A Markdown summary: context lines, the target, and one table row per frame and batch size."""
        lines = [
            "## Detector speed (MTCNN and YuNet)",
            "",
            f"- ms per frame, median of {self.repeats} interleaved rounds after a warm-up, each timed "
            f"call right after {SETTLE_RUNS} untimed one(s) of the same detector; "
            f"faces with score ≥ {self.min_scores['mtcnn']:g} (MTCNN) or "
            f"{self.min_scores['yunet']:g} (YuNet) and side ≥ {self.min_face_size_px} px",
            f"- CPU: {self.cpu_model}; torch {self.torch_version} and OpenCV {self.opencv_version}, "
            f"{self.torch_threads} threads each",
        ]
        lines += [f"- {line}" for line in self._target_lines()]
        header = " | ".join(f"{LABELS[contender]} ms" for contender in CONTENDERS)
        lines += [
            "",
            f"| frames | batch | {header} | MTCNN vs facenet | YuNet vs MTCNN (opencv / torch) | "
            "faces (MTCNN / facenet / YuNet opencv / YuNet torch) |",
            "| --- | ---: |" + " ---: |" * (len(CONTENDERS) + 3),
        ]
        for row in self.rows:
            times = " | ".join(f"{timing.ms_per_frame:.1f}" for timing in row.timings)
            faces = " / ".join(str(timing.faces) for timing in row.timings)
            lines.append(
                f"| {row.frames} | {row.batch} | {times} | {row.speedup('mtcnn', 'facenet'):.2f}× | "
                f"{row.speedup('yunet_opencv', 'mtcnn'):.2f}× / {row.speedup('yunet_torch', 'mtcnn'):.2f}× | "
                f"{faces} |"
            )
        return "\n".join(lines) + "\n"

    def _target_lines(self) -> list[str]:
        lines = []
        for row in self.rows:
            if row.frames != TARGET_FRAMES:
                continue
            ratios = [
                f"{runtime} {row.speedup(contender, 'mtcnn'):.2f}× "
                f"({'met' if row.speedup(contender, 'mtcnn') >= TARGET_YUNET_SPEEDUP else 'not met'})"
                for contender, runtime in YUNET_RUNTIMES.items()
            ]
            lines.append(
                f"YuNet vs MTCNN per {TARGET_FRAMES} at batch {row.batch} "
                f"(target ≥ {TARGET_YUNET_SPEEDUP:g}×): {', '.join(ratios)}"
            )
        return lines


def bench_frames() -> dict[str, ImageRGB]:
    """Test frames: the astronaut photo (512×512) and both sample photos on 640×360 / 1280×720 canvases."""
    photos = sample_images()
    astronaut, hopper = photos["Eileen Collins"], photos["Grace Hopper"]

    def canvas(width: int, height: int) -> ImageRGB:
        frame = np.full((height, width, 3), 110, np.uint8)
        for photo, x in ((astronaut, 0), (hopper, width // 2)):
            scale = min((width // 2) / photo.shape[1], height / photo.shape[0])
            small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            frame[: small.shape[0], x : x + small.shape[1]] = small
        return frame

    return {
        "512×512 photo": astronaut,
        TARGET_FRAMES: canvas(640, 360),
        "1280×720 frame": canvas(1280, 720),
    }


def run_detect_bench(
    models_dir: Path,
    repeats: int = 5,
    batch_sizes: Sequence[int] = (1, 8),
    frames: dict[str, ImageRGB] | None = None,
) -> DetectBenchResult:
    """Time MTCNN (ours and facenet-pytorch's) and YuNet (both runtimes) on each frame at each batch size.

    Every detector runs on the CPU with the default ``DetectorConfig`` thresholds.

    Args:
        models_dir: Where YuNet's ONNX file is installed (``Settings.model_files_dir``).
        repeats: Timed rounds per configuration.
        batch_sizes: Frames per call (each frame is repeated to fill the batch).
        frames: ``(H, W, 3)`` uint8 RGB frames by name; ``None`` uses :func:`bench_frames`.

    Returns:
        The measurements, one row per frame and batch size.

    Raises:
        ValueError: ``repeats`` or a batch size is below 1, a batch size is above 512, or
            ``frames`` is empty.
        ModelLoadError: MTCNN's or YuNet's weights cannot be loaded.
    """
    if repeats < 1 or not batch_sizes or min(batch_sizes) < 1 or max(batch_sizes) > 512:
        raise ValueError(f"repeats must be ≥ 1 and batch sizes 1-512, got {repeats} and {tuple(batch_sizes)}")
    if frames is not None and not frames:
        raise ValueError("frames is empty")
    from facenet_pytorch.models.utils.detect_face import detect_face

    config = DetectorConfig(backend="mtcnn", device="cpu", batch_size=max(batch_sizes))
    mtcnn = MtcnnDetector(config)
    detectors: dict[Contender, Detector] = {"mtcnn": mtcnn}
    for contender, runtime in YUNET_RUNTIMES.items():
        yunet_config = config.model_copy(update={"backend": "yunet", "runtime": runtime})
        detectors[contender] = YunetDetector(yunet_config, models_dir)
    for detector in detectors.values():
        detector.load()
    nets = mtcnn._nets
    assert nets is not None

    def facenet(batch: ImageRGB) -> int:
        with torch.inference_mode():
            boxes, _ = detect_face(
                torch.from_numpy(batch.copy()),
                config.min_face_size_px,
                nets.pnet,
                nets.rnet,
                nets.onet,
                list(config.thresholds),
                config.scale_factor,
                "cpu",
            )
        return sum(int((b[:, 4] >= config.score_cutoff).sum()) for b in boxes if len(b))

    def ours(detector: Detector, batch: ImageRGB) -> int:
        return sum(len(faces) for faces in detector.detect(list(batch)))

    runners: dict[Contender, Callable[[ImageRGB], int]] = {"facenet": facenet}
    runners.update({contender: partial(ours, detector) for contender, detector in detectors.items()})

    contenders: dict[tuple[str, int], Callable[[], object]] = {}
    batches: dict[tuple[str, int], ImageRGB] = {}
    for name, frame in (bench_frames() if frames is None else frames).items():
        for batch_size in batch_sizes:
            batch = np.stack([frame] * batch_size)
            batches[(name, batch_size)] = batch
            for contender in CONTENDERS:
                contenders[(f"{contender}|{name}", batch_size)] = partial(runners[contender], batch)
    seconds = time_round_robin(contenders, repeats, settle_runs=SETTLE_RUNS)

    rows = []
    for (name, batch_size), batch in batches.items():
        timings = tuple(
            ContenderTiming(
                contender,
                1000 * statistics.median(seconds[(f"{contender}|{name}", batch_size)]) / batch_size,
                runners[contender](batch[:1]),
            )
            for contender in CONTENDERS
        )
        rows.append(DetectRow(name, batch.shape[2], batch.shape[1], batch_size, timings))
    logger.info("detector benchmark done: %d rows, %d rounds", len(rows), repeats)
    return DetectBenchResult(
        rows=tuple(rows),
        repeats=repeats,
        min_scores={"mtcnn": config.score_cutoff, "yunet": yunet_config.score_cutoff},
        min_face_size_px=config.min_face_size_px,
        torch_threads=torch.get_num_threads(),
        cpu_model=cpu_model(),
        torch_version=torch.__version__,
        opencv_version=cv2.__version__,
    )
