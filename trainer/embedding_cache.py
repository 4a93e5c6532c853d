"""Embedding a list of image files once, with a resumable on-disk cache.

Benchmarks embed thousands of images; a re-run with the same models and settings reads
the cache instead. The cache key covers everything that changes an embedding: the
embedder version, detector and aligner settings and the alignment template.

Images where MTCNN finds no face get an embedding all the same, by one of two fallbacks:

- ``mean_layout``: the chip is cut with the mean landmark layout of the images that had a
  face (right for uncropped sets of one framing, such as LFW's 250×250 images);
- ``whole_image``: the whole image, resized to the chip, is taken as the aligned face
  (right for sets that are already face crops, such as AgeDB-30 or CALFW).

The fallback embeddings are recomputed on every run rather than read from the cache, so
the fallback in use always applies (they are few: 2 of LFW's 13,233 images).
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from tqdm import tqdm

from vigil.config import Settings
from vigil.errors import DatasetError, VigilError
from vigil.files import write_atomically
from vigil.image import load_image
from vigil.models.aligner import FaceAligner
from vigil.models.detector import FaceDetections
from vigil.models.pipeline import FacePipeline
from vigil.typing import Embeddings, ImageRGB

logger = logging.getLogger(__name__)

CHECKPOINT_EVERY_IMAGES = 500
_CACHE_ARRAYS = ("paths", "embeddings", "relative_landmarks", "sizes", "detected", "unreadable")

NoFaceFallback = Literal["mean_layout", "whole_image"]
"""How an image without a detected face is embedded (see the module docstring)."""


@dataclass(frozen=True)
class EmbeddedImages:
    """Embeddings of a list of images, one row per image.

    Attributes:
        paths: The images, in order.
        embeddings: ``(N, D)`` float32.
        detected: ``(N,)`` bool: False where no face was found and the no-face fallback was used.
        unreadable: ``(N,)`` bool: True where the file could not be read (embedding is NaN).
        landmarks: ``(N, 5, 2)`` float64 pixel positions of the embedded face's landmarks
            (NaN where no face was detected), to cut the same chips again.
    """

    paths: list[Path]
    embeddings: Embeddings
    detected: np.ndarray
    unreadable: np.ndarray
    landmarks: np.ndarray

    def row(self) -> dict[Path, int]:
        return {path: index for index, path in enumerate(self.paths)}


def cache_key(settings: Settings, pipeline: FacePipeline, images_root: Path) -> str:
    """A short hash of everything that changes the embeddings of these images."""
    parts = {
        "embedder": pipeline.embedder.version,
        # A different weights file or fp16 (CUDA) changes embeddings under the same version name.
        "weights": str(settings.embedder.weights_path.resolve()) if settings.embedder.weights_path else None,
        "device": str(getattr(pipeline.embedder, "device", "cpu")),
        # The cut-off in force, not the setting: unset and its backend's default are one detector.
        "detector": settings.detector.model_dump(mode="json", exclude={"device", "batch_size"})
        | {"min_score": settings.detector.score_cutoff},
        "aligner": settings.aligner.model_dump(mode="json"),
        "template": pipeline.aligner.template.round(4).tolist(),
        "root": str(images_root.resolve()),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def embed_dataset(
    settings: Settings,
    pipeline: FacePipeline,
    paths: Sequence[Path],
    images_root: Path,
    *,
    use_cache: bool,
    fallback: NoFaceFallback = "mean_layout",
) -> EmbeddedImages:
    """``embed_images`` for a benchmark dataset: cached under ``settings.cache_dir`` unless
    ``use_cache`` is off, and every image must be readable.

    Args:
        settings: Where the cache lives and the detector batch size.
        pipeline: The loaded face pipeline.
        paths: The images.
        images_root: The dataset folder (part of the cache key).
        use_cache: Whether to read and write the embedding cache.
        fallback: How images without a detected face are embedded.

    Raises:
        DatasetError: Some images could not be read.
    """
    cache_file = (
        settings.cache_dir / "embeddings" / f"{cache_key(settings, pipeline, images_root)}.npz"
        if use_cache
        else None
    )
    embedded = embed_images(
        pipeline, paths, cache_file, batch_size=settings.detector.batch_size, fallback=fallback
    )
    if embedded.unreadable.any():
        bad = [str(p) for p, flag in zip(embedded.paths, embedded.unreadable, strict=True) if flag]
        raise DatasetError(f"{len(bad)} images could not be read (first: {bad[0]}); fix or remove them")
    return embedded


def embed_images(
    pipeline: FacePipeline,
    paths: Sequence[Path],
    cache_file: Path | None,
    batch_size: int = 16,
    fallback: NoFaceFallback = "mean_layout",
) -> EmbeddedImages:
    """Embed the central face of every image, resuming from ``cache_file`` when present.

    Images without a detected face are embedded by ``fallback`` (see the module docstring).
    """
    paths = list(dict.fromkeys(path.resolve() for path in paths))
    done = _read_cache(cache_file) if cache_file is not None else {}
    todo = [path for path in paths if str(path) not in done]
    if done:
        logger.info("%d of %d embeddings read from cache %s", len(paths) - len(todo), len(paths), cache_file)
    with tqdm(total=len(todo), desc="embedding", unit="img", disable=not todo) as progress:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            done.update(_embed_chunk(pipeline, chunk))
            progress.update(len(chunk))
            if (
                cache_file is not None
                and (start // batch_size) % max(CHECKPOINT_EVERY_IMAGES // batch_size, 1) == 0
            ):
                _write_cache(cache_file, done)
    _fill_undetected(pipeline, paths, done, fallback, batch_size)
    if cache_file is not None:
        _write_cache(cache_file, done)
    rows = [done[str(path)] for path in paths]
    return EmbeddedImages(
        paths=paths,
        embeddings=np.stack([row["embedding"] for row in rows]).astype(np.float32),
        detected=np.array([bool(row["detected"]) for row in rows]),
        unreadable=np.array([bool(row["unreadable"]) for row in rows]),
        landmarks=np.stack([row["relative_landmarks"] * row["size"] for row in rows]).astype(np.float64),
    )


_Row = dict[str, np.ndarray | bool]


def _embed_chunk(pipeline: FacePipeline, chunk: Sequence[Path]) -> dict[str, _Row]:
    images: list[ImageRGB] = []
    readable: list[Path] = []
    rows: dict[str, _Row] = {}
    dim = pipeline.embedder.dim
    for path in chunk:
        try:
            images.append(load_image(path))
            readable.append(path)
        except VigilError as exc:
            logger.warning("skipping unreadable image: %s", exc)
            rows[str(path)] = _row(np.full(dim, np.nan, np.float32), None, (0, 0), unreadable=True)
    for path, image, face in zip(readable, images, pipeline.central_faces(images), strict=True):
        height, width = image.shape[:2]
        if face is None:
            rows[str(path)] = _row(np.full(dim, np.nan, np.float32), None, (width, height), unreadable=False)
        else:
            rows[str(path)] = _row(face.embedding, face.landmarks, (width, height), unreadable=False)
    return rows


def _row(
    embedding: np.ndarray, landmarks: np.ndarray | None, size: tuple[int, int], *, unreadable: bool
) -> _Row:
    # Landmarks are stored as fractions of the image size, so layouts of different sizes average.
    relative = np.full((5, 2), np.nan) if landmarks is None else landmarks / np.array(size, dtype=np.float64)
    return {
        "embedding": np.asarray(embedding, np.float32),
        "relative_landmarks": relative,
        "size": np.array(size),
        "detected": landmarks is not None,
        "unreadable": unreadable,
    }


def _fill_undetected(
    pipeline: FacePipeline,
    paths: Sequence[Path],
    rows: dict[str, _Row],
    fallback: NoFaceFallback,
    batch_size: int,
) -> None:
    """Embed the readable images without a detected face by ``fallback``."""
    missing = [p for p in paths if not rows[str(p)]["detected"] and not rows[str(p)]["unreadable"]]
    if not missing:
        return
    if fallback == "whole_image":
        logger.info("%d images without a detected face: embedding the whole image", len(missing))
        size = pipeline.embedder.chip_size_px
        for start in range(0, len(missing), batch_size):
            chunk = missing[start : start + batch_size]
            chips = np.stack([_whole_image_chip(load_image(path), size) for path in chunk])
            for path, embedding in zip(chunk, pipeline.embedder.embed(chips), strict=True):
                rows[str(path)]["embedding"] = embedding
        return
    layouts = [rows[str(p)]["relative_landmarks"] for p in paths if rows[str(p)]["detected"]]
    if not layouts:
        return
    mean_layout = np.mean(np.stack(layouts), axis=0)
    logger.info("%d images without a detected face: using the mean landmark layout", len(missing))
    for path in missing:
        image = load_image(path)
        landmarks = (mean_layout * np.array(image.shape[1::-1]))[None].astype(np.float32)
        box = np.array([[0, 0, image.shape[1], image.shape[0]]], np.float32)
        [[face]] = pipeline.embed_detections(
            [image], [FaceDetections(box, np.zeros(1, np.float32), landmarks)]
        )
        rows[str(path)]["embedding"] = face.embedding


def face_chips(aligner: FaceAligner, embedded: EmbeddedImages) -> ImageRGB:
    """Aligned chips of the embedded faces, ``(N, S, S, 3)`` uint8, cut again from their landmarks.

    ``aligner`` may be the pipeline's (the chips the embeddings came from) or another layout's.
    Images without a detected face give the whole image resized (the ``whole_image``
    fallback), whichever fallback embedded them.
    """
    size = aligner.chip_size_px
    chips = np.empty((len(embedded.paths), size, size, 3), np.uint8)
    rows = zip(embedded.paths, embedded.landmarks, embedded.detected, strict=True)
    for index, (path, landmarks, detected) in enumerate(
        tqdm(rows, total=len(chips), desc="chips", unit="img")
    ):
        image = load_image(path)
        chips[index] = (
            aligner.align(image, landmarks[None])[0] if detected else _whole_image_chip(image, size)
        )
    return chips


def _whole_image_chip(image: ImageRGB, chip_size_px: int) -> ImageRGB:
    """The whole ``(H, W, 3)`` RGB image resized (aspect not kept) to a ``(S, S, 3)`` chip."""
    chip = cv2.resize(image, (chip_size_px, chip_size_px), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(chip, dtype=np.uint8)


def _read_cache(cache_file: Path) -> dict[str, _Row]:
    if not cache_file.is_file():
        return {}
    try:
        # Open the file ourselves: np.load leaks its handle when the zip is corrupt.
        with cache_file.open("rb") as handle, np.load(handle, allow_pickle=False) as data:
            # NpzFile decodes an array on every access: read each one once.
            arrays = {name: data[name] for name in _CACHE_ARRAYS}
        return {
            str(path): {
                "embedding": arrays["embeddings"][i],
                "relative_landmarks": arrays["relative_landmarks"][i],
                "size": arrays["sizes"][i],
                "detected": bool(arrays["detected"][i]),
                "unreadable": bool(arrays["unreadable"][i]),
            }
            for i, path in enumerate(arrays["paths"])
        }
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        logger.warning("ignoring unreadable embedding cache %s (%s)", cache_file, exc)
        return {}


def _write_cache(cache_file: Path, rows: dict[str, _Row]) -> None:
    keys = list(rows)

    def save(temporary: Path) -> None:
        with temporary.open("wb") as handle:  # a file object: np.savez would append ".npz" to a path
            np.savez(
                handle,
                paths=np.array(keys),
                embeddings=np.stack([rows[k]["embedding"] for k in keys]),
                relative_landmarks=np.stack([rows[k]["relative_landmarks"] for k in keys]),
                sizes=np.stack([rows[k]["size"] for k in keys]),
                detected=np.array([rows[k]["detected"] for k in keys]),
                unreadable=np.array([rows[k]["unreadable"] for k in keys]),
            )

    write_atomically(cache_file, save)
