"""``vigil bench lfw``: the standard LFW View-2 protocol run on Vigil's face pipeline.

Protocol: the 6,000 pairs of ``pairs.txt`` in 10 folds; for each fold the decision
threshold is chosen on the other nine and accuracy measured on it (mean ± std over the
folds). Every pair is scored: images where the detector finds no face are embedded with the
mean landmark layout of the others (counted as ``no_face_count``). The face scored in
each image is the one nearest the image centre.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import numpy as np
import torch

from trainer.embedding_cache import EmbeddedImages, NoFaceFallback, embed_dataset
from trainer.metrics import VerificationResult, kfold_verification, roc_curve
from trainer.pairs import Pair, read_pairs
from trainer.report import JsonValue, plot_roc, verification_markdown, write_json
from vigil.config import Settings
from vigil.errors import DatasetError
from vigil.machine import cpu_model
from vigil.models.pipeline import FacePipeline
from vigil.typing import FloatArray

logger = logging.getLogger(__name__)

Metric = Literal["euclidean", "cosine"]

_FALLBACK_WORDS: dict[NoFaceFallback, str] = {
    "mean_layout": "cut with the mean landmark layout of the others",
    "whole_image": "embedded whole, the image resized to the chip as the aligned face",
}


@dataclass(frozen=True)
class PairsBenchResult:
    """A verification benchmark's figures and where its reports were written."""

    summary: str
    figures: dict[str, JsonValue]


def pair_scores(embedded: EmbeddedImages, pairs: list[Pair], metric: Metric) -> FloatArray:
    """Similarity of each pair (higher = more alike): −Euclidean distance or cosine similarity."""
    row = embedded.row()
    first = embedded.embeddings[[row[p.path_a.resolve()] for p in pairs]].astype(np.float64)
    second = embedded.embeddings[[row[p.path_b.resolve()] for p in pairs]].astype(np.float64)
    if metric == "euclidean":
        return np.asarray(-np.linalg.norm(first - second, axis=1), dtype=np.float64)
    first /= np.linalg.norm(first, axis=1, keepdims=True)
    second /= np.linalg.norm(second, axis=1, keepdims=True)
    return np.asarray(np.sum(first * second, axis=1), dtype=np.float64)


def run_lfw_bench(
    settings: Settings,
    data_dir: Path,
    json_path: Path,
    *,
    use_cache: bool = True,
    metric: Metric = "cosine",
) -> PairsBenchResult:
    """Run LFW View 2 and write ``json_path``, a Markdown summary and a ROC PNG beside it.

    Raises:
        DatasetError: ``pairs.txt`` or the images are missing or malformed.
    """
    pairs_file = data_dir / "pairs.txt"
    images_dir = data_dir / "lfw-deepfunneled"
    if not pairs_file.is_file():
        raise DatasetError(f"{pairs_file} not found; pass --data pointing at the LFW folder (with pairs.txt)")
    pairs = read_pairs(pairs_file, images_dir)
    return run_pairs_bench(settings, pairs, images_dir, json_path, "LFW", use_cache=use_cache, metric=metric)


def run_pairs_bench(
    settings: Settings,
    pairs: list[Pair],
    images_dir: Path,
    json_path: Path,
    name: str,
    *,
    use_cache: bool = True,
    metric: Metric = "cosine",
    fallback: NoFaceFallback = "mean_layout",
) -> PairsBenchResult:
    """Score ``pairs`` with the configured pipeline and evaluate them fold by fold.

    Args:
        settings: Models and cache location.
        pairs: The pairs, with their folds (at least two).
        images_dir: The dataset folder (part of the embedding cache key).
        json_path: Results JSON; the Markdown summary and ROC PNG are written beside it.
        name: The benchmark's name in the reports.
        use_cache: Whether to read and write the embedding cache.
        metric: The pair score the figures are for (the other one is reported too).
        fallback: How images without a detected face are embedded (counted as ``no_face_count``).

    Raises:
        DatasetError: Images cannot be read, or the pairs cannot be cross-validated (one
            class only, a single fold, a fold whose complement lacks a class).
    """
    pipeline = FacePipeline.from_settings(settings)
    started = time.monotonic()
    pipeline.load()
    paths = [path for pair in pairs for path in (pair.path_a, pair.path_b)]
    embedded = embed_dataset(settings, pipeline, paths, images_dir, use_cache=use_cache, fallback=fallback)

    labels = np.array([pair.same for pair in pairs])
    folds = np.array([pair.fold for pair in pairs])
    scores = pair_scores(embedded, pairs, metric)
    try:
        result = kfold_verification(scores, labels, folds)
    except ValueError as exc:  # e.g. a pairs file with one class only, or a single fold
        raise DatasetError(f"the pairs cannot be evaluated: {exc}") from None
    figures = _figures(result, metric, embedded, pipeline, time.monotonic() - started, name)
    figures["no_face_fallback"] = fallback
    fold_count = len(result.fold_accuracies)
    # The other metric, from the same embeddings, for comparison.
    other: Metric = "cosine" if metric == "euclidean" else "euclidean"
    other_result = kfold_verification(pair_scores(embedded, pairs, other), labels, folds)
    figures[f"{other}_metric"] = {
        key: value
        for key, value in _thresholds_as_configured(other_result.to_dict(), other).items()
        if key
        in ("accuracy_mean", "accuracy_std", "auc", "tar_at_far_1e-3", "tar_at_far_1e-2", "eer", "threshold")
    }

    write_json(json_path, figures)
    far, tar, _ = roc_curve(scores, labels)
    plot_roc(
        far,
        tar,
        json_path.with_suffix(".png"),
        label=f"Vigil {pipeline.embedder.version}",
        title=f"{name} ROC",
    )
    markdown = verification_markdown(
        figures, title=f"{name} verification ({len(pairs)} pairs, {fold_count}-fold)"
    )
    markdown += (
        f"\nImages without a detected face: {figures['no_face_count']} of {figures['images']}, "
        f"{_FALLBACK_WORDS[fallback]}.\n"
    )
    json_path.with_suffix(".md").write_text(markdown + "\n", encoding="utf-8")
    summary = (
        f"{name}: accuracy {result.accuracy_mean:.2%} ± {result.accuracy_std:.2%} ({fold_count}-fold), "
        f"AUC {result.auc:.4f}, "
        f"TAR@FAR=1e-3 {result.tar_at_far_1e3:.2%}, EER {result.eer:.2%}, "
        f"{figures['no_face_count']} images without a detected face ({_FALLBACK_WORDS[fallback]})\n"
        f"  with {other} scores: "
        f"accuracy {other_result.accuracy_mean:.2%} ± {other_result.accuracy_std:.2%}, "
        f"TAR@FAR=1e-3 {other_result.tar_at_far_1e3:.2%}\n"
        f"reports: {json_path}, {json_path.with_suffix('.md')}, {json_path.with_suffix('.png')}"
    )
    return PairsBenchResult(summary, figures)


def _thresholds_as_configured(figures: Mapping[str, JsonValue], metric: Metric) -> dict[str, JsonValue]:
    """Euclidean scores are −distance: report thresholds as the distances users configure."""
    converted = dict(figures)
    if metric == "euclidean":
        for key in ("threshold", "eer_threshold"):
            converted[key] = -float(cast(float, figures[key]))
        converted["fold_thresholds"] = [-float(t) for t in cast(list[float], figures["fold_thresholds"])]
    return converted


def _figures(
    result: VerificationResult,
    metric: Metric,
    embedded: EmbeddedImages,
    pipeline: FacePipeline,
    seconds: float,
    name: str,
) -> dict[str, JsonValue]:
    figures = _thresholds_as_configured(result.to_dict(), metric)
    folds = len(result.fold_accuracies)
    figures.update(
        {
            "benchmark": name,
            "protocol": f"{folds}-fold verification; threshold per fold chosen on the other {folds - 1}",
            "threshold_metric": "euclidean_distance (same person below)"
            if metric == "euclidean"
            else "cosine (above)",
            "no_face_count": int((~embedded.detected).sum()),
            "images": len(embedded.paths),
            "embedder": pipeline.embedder.version,
            "detector": pipeline.detector.name,
            "seconds": round(seconds, 1),
            "machine": cpu_model(),
            "torch_threads": torch.get_num_threads(),
        }
    )
    return figures
