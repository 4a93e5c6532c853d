"""Embedding many images once: cache, resume and the no-face fallback."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tests.conftest import LFW, require
from trainer.embedding_cache import embed_images
from vigil.models.pipeline import FacePipeline


def _lfw_paths(count: int) -> list[Path]:
    root = require(LFW / "lfw-deepfunneled")
    return [root / "Aaron_Peirsol" / f"Aaron_Peirsol_{i:04d}.jpg" for i in range(1, count + 1)]


def test_cache_is_written_and_reused(pipeline: FacePipeline, tmp_path: Path) -> None:
    # given a few real face crops and an empty cache
    paths = _lfw_paths(3)
    cache = tmp_path / "embeddings.npz"
    # when embedded twice
    first = embed_images(pipeline, paths, cache)
    assert cache.is_file()
    second = embed_images(pipeline, paths, cache)
    # then the second run returns the cached values exactly, in input order
    assert first.paths == [path.resolve() for path in paths] == second.paths
    np.testing.assert_array_equal(first.embeddings, second.embeddings)
    assert first.detected.all() and not first.unreadable.any()


def test_resume_embeds_only_new_images(pipeline: FacePipeline, tmp_path: Path) -> None:
    # given a cache holding 2 images, and a request for those 2 plus 2 more
    paths = _lfw_paths(4)
    cache = tmp_path / "embeddings.npz"
    partial = embed_images(pipeline, paths[:2], cache)
    # when the larger set is embedded
    full = embed_images(pipeline, paths, cache)
    # then the first two are the cached rows and all four are present
    np.testing.assert_array_equal(full.embeddings[:2], partial.embeddings)
    assert full.embeddings.shape == (4, 128) and np.isfinite(full.embeddings).all()


def test_image_without_face_uses_mean_layout(pipeline: FacePipeline, tmp_path: Path) -> None:
    # given two face crops and a same-size grey image in which MTCNN finds nothing
    paths = _lfw_paths(2)
    blurred = tmp_path / "grey.jpg"
    image = cv2.imread(str(paths[0]))
    cv2.imwrite(str(blurred), np.full_like(image, 128))
    # when embedded
    result = embed_images(pipeline, [*paths, blurred], cache_file=None)
    # then the grey image is flagged and still has a finite embedding
    assert result.detected.tolist() == [True, True, False]
    assert np.isfinite(result.embeddings[2]).all()


def test_unreadable_image_is_flagged_not_fatal(pipeline: FacePipeline, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    result = embed_images(pipeline, [*_lfw_paths(1), broken], cache_file=None)
    assert result.unreadable.tolist() == [False, True]
    assert np.isnan(result.embeddings[1]).all()


def test_truncated_cache_is_ignored_and_rewritten(pipeline: FacePipeline, tmp_path: Path) -> None:
    # given a cache file cut off mid-write (e.g. by a crash of an older version)
    paths = _lfw_paths(2)
    cache = tmp_path / "embeddings.npz"
    embed_images(pipeline, paths, cache)
    cache.write_bytes(cache.read_bytes()[:100])
    # when embedded again, then it recomputes instead of crashing, and the cache is whole again
    result = embed_images(pipeline, paths, cache)
    assert np.isfinite(result.embeddings).all()
    assert embed_images(pipeline, paths, cache).embeddings.shape == (2, 128)
    assert not list(tmp_path.glob(".*.tmp")), "no temporary files are left behind"
