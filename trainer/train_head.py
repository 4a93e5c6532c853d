"""``vigil train head``: fine-tune a head on the frozen backbone, check it on held-out people, store it.

Steps:

1. Training data: a folder-per-person dataset (``DIR/<name>/*.jpg|png``); people with fewer
   than two images are skipped, and ``--exclude-pairs`` drops everyone named in a pairs
   file (how one trains on LFW people disjoint from ``pairs.txt``).
2. The backbone's embeddings of the training and evaluation images are computed once and
   cached (:func:`~trainer.embedding_cache.embed_dataset`); training then runs on them
   alone (:mod:`trainer.head_training`).
3. Held-out evaluation: the evaluation pairs (default LFW ``pairs.txt``), 10-fold protocol
   on cosine scores, backbone vs head on the same pairs. A pairs file with a single fold
   (LFW View 1) is dealt round-robin into 10. Evaluation people must not be training people.
4. The head's calibration: the backbone's calibration quantile-mapped into the head's space
   (:mod:`trainer.head_calibration`) on impostor pairs of the evaluation images.
5. The head, its calibration, the loss curve and the report are stored as a ``head``
   artifact, and promoted unless its mean held-out accuracy is below the backbone's (exit
   status 1, unless ``--force``, which is recorded in the artifact's notes) or
   ``--no-promote`` is given.

This module imports torch only when a command runs, so ``vigil`` starts fast.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from indexer.calibration import CalibrationSource, read_calibration, shipped_calibration_path
from trainer.head_calibration import ImpostorScores, cosine_scores, map_calibration, sample_impostor_pairs
from trainer.metrics import VerificationResult
from trainer.pairs import DEFAULT_FOLDS, Pair, read_pairs
from trainer.report import JsonValue, write_json
from vigil.artifacts import Artifact, ArtifactRegistry
from vigil.config import Settings
from vigil.errors import CalibrationError, DatasetError
from vigil.typing import HeadKind, HeadLoss

if TYPE_CHECKING:
    from indexer.calibration import Calibration
    from trainer.embedding_cache import EmbeddedImages
    from trainer.head_training import HeadEvaluation, TrainedHead

logger = logging.getLogger(__name__)

DEFAULT_EVAL_PAIRS = Path("../shared/data/lfw/pairs.txt")
DEFAULT_EVAL_IMAGES = Path("../shared/data/lfw/lfw-deepfunneled")
DEFAULT_EPOCHS = 30
DEFAULT_LOSS: HeadLoss = "triplet"
DEFAULT_KIND: HeadKind = "linear"
"""Linear by default: with a few hundred training people it stayed closest to the backbone
(held-out accuracy within ±0.3 points, where the residual head lost up to 0.3)."""
EXIT_REFUSED = 1
"""``vigil train head``'s exit status when the head loses held-out accuracy and is not promoted."""
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
EVAL_PROTOCOL = "10-fold verification on cosine scores, threshold per fold chosen on the other 9"
_SHOWN_NAMES = 3


@dataclass(frozen=True)
class PeopleDataset:
    """The images of a folder-per-person dataset kept for training.

    Attributes:
        root: The dataset folder.
        names: Each kept person's folder name; ``labels`` index into it.
        paths: Every kept image.
        labels: ``(N,)`` int64 person index of each image.
        skipped: People left out for having fewer than two images.
        excluded: People left out because an excluded pairs file names them.
    """

    root: Path
    names: list[str]
    paths: list[Path]
    labels: npt.NDArray[np.int64]
    skipped: int
    excluded: int


@dataclass(frozen=True)
class TrainHeadOptions:
    """What ``vigil train head`` was asked to do (``vigil train head --help`` explains each option)."""

    dataset: Path
    loss: HeadLoss = DEFAULT_LOSS
    kind: HeadKind = DEFAULT_KIND
    epochs: int = DEFAULT_EPOCHS
    exclude_pairs: Path | None = None
    eval_pairs: Path | None = None
    eval_images: Path | None = None
    seed: int = 0
    force: bool = False
    promote: bool = True
    json_path: Path | None = None


@dataclass(frozen=True)
class TrainHeadOutcome:
    """What a run produced and decided.

    Attributes:
        artifact: The stored head artifact.
        promoted: Whether it is now the head in force.
        refused: The head's mean held-out accuracy is below the backbone's and ``--force``
            was not given, so it was not promoted.
        summary: Lines for the terminal.
        figures: The JSON report.
    """

    artifact: Artifact
    promoted: bool
    refused: bool
    summary: str
    figures: dict[str, JsonValue] = field(default_factory=dict)


def read_people_dataset(root: Path, exclude: Collection[str] = ()) -> PeopleDataset:
    """List a folder-per-person dataset's images (``.jpg``, ``.jpeg``, ``.png``), sorted.

    Args:
        root: Folder with one sub-folder of images per person.
        exclude: Folder names of people to leave out.

    Returns:
        The people with at least two images, not excluded.

    Raises:
        DatasetError: ``root`` is not a folder, or fewer than two people are left.
    """
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} not found; pass --dataset with one sub-folder per person")
    names: list[str] = []
    paths: list[Path] = []
    labels: list[int] = []
    skipped = excluded = 0
    for folder in sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith(".")):
        if folder.name in exclude:
            excluded += 1
            continue
        images = sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
        if len(images) < 2:
            skipped += 1
            continue
        labels += [len(names)] * len(images)
        names.append(folder.name)
        paths += images
    if skipped:
        logger.info("skipped %d people with fewer than 2 images in %s", skipped, root)
    if len(names) < 2:
        raise DatasetError(
            f"{root} has {len(names)} people with 2 or more images ({skipped} with fewer were skipped, "
            f"{excluded} excluded); training needs at least 2 people with 2+ images each"
        )
    return PeopleDataset(root, names, paths, np.array(labels, dtype=np.int64), skipped, excluded)


def people_in_pairs(pairs_file: Path) -> set[str]:
    """Folder names of every person a pairs file names (LFW or plain format).

    Raises:
        DatasetError: The file is missing or malformed.
    """
    pairs = read_pairs(pairs_file, Path(), check_images=False)
    return {path.parent.name for pair in pairs for path in (pair.path_a, pair.path_b)}


def evaluation_pairs(pairs_file: Path, images_dir: Path) -> list[Pair]:
    """The held-out pairs, in at least two folds (a one-fold file is dealt round-robin into 10).

    Raises:
        DatasetError: The file or its images are missing, or it is malformed.
    """
    pairs = read_pairs(pairs_file, images_dir)
    if len({pair.fold for pair in pairs}) < 2:
        logger.info("%s has a single fold: dealing its pairs into %d folds", pairs_file, DEFAULT_FOLDS)
        pairs = [replace(pair, fold=index % DEFAULT_FOLDS) for index, pair in enumerate(pairs)]
    return pairs


def check_disjoint(dataset: PeopleDataset, pairs: list[Pair], pairs_file: Path) -> None:
    """Refuse to evaluate on training people: the held-out accuracy would be meaningless.

    People are compared by folder name, and images by path.

    Raises:
        DatasetError: Some evaluation people or images are also training ones.
    """
    eval_paths = {path.resolve() for pair in pairs for path in (pair.path_a, pair.path_b)}
    shared = sorted(set(dataset.names) & {path.parent.name for path in eval_paths})
    shared_images = eval_paths & {path.resolve() for path in dataset.paths}
    if shared or shared_images:
        examples = ", ".join(
            shared[:_SHOWN_NAMES] or [str(path) for path in sorted(shared_images)[:_SHOWN_NAMES]]
        )
        raise DatasetError(
            f"{len(shared)} people ({len(shared_images)} images) are both in the training set and in "
            f"{pairs_file} (e.g. {examples}); pass --exclude-pairs {pairs_file} to train on other people"
        )


def run_train_head(settings: Settings, options: TrainHeadOptions) -> TrainHeadOutcome:
    """Train, evaluate, calibrate and store a head; promote it unless the rule refuses.

    Raises:
        DatasetError: The dataset or the evaluation pairs are missing, malformed or overlap.
        CalibrationError: There is no calibration for the backbone to map into the head's space.
    """
    eval_pairs_file, eval_images = _evaluation_source(options)
    excluded = people_in_pairs(options.exclude_pairs) if options.exclude_pairs is not None else set()
    dataset = read_people_dataset(options.dataset, excluded)
    pairs = evaluation_pairs(eval_pairs_file, eval_images)
    check_disjoint(dataset, pairs, eval_pairs_file)

    # torch and the models load only once the inputs are known to be good.
    from trainer.embedding_cache import embed_dataset
    from trainer.head_training import TrainingConfig, train_head
    from vigil.models.pipeline import FacePipeline

    pipeline = FacePipeline.from_settings(settings)
    pipeline.load()
    backbone = pipeline.embedder.version
    _base_calibration(settings, backbone)  # fail before the long work, not after it
    training_images = embed_dataset(settings, pipeline, dataset.paths, dataset.root, use_cache=True)
    eval_paths = [path for pair in pairs for path in (pair.path_a, pair.path_b)]
    eval_embedded = embed_dataset(settings, pipeline, eval_paths, eval_images, use_cache=True)
    config = TrainingConfig(loss=options.loss, kind=options.kind, epochs=options.epochs, seed=options.seed)
    trained = train_head(training_images.embeddings, dataset.labels, config)
    return publish_head(
        settings,
        options,
        dataset=dataset,
        trained=trained,
        pairs=pairs,
        pairs_file=eval_pairs_file,
        eval_embedded=eval_embedded,
        backbone=backbone,
    )


def publish_head(
    settings: Settings,
    options: TrainHeadOptions,
    *,
    dataset: PeopleDataset,
    trained: TrainedHead,
    pairs: list[Pair],
    pairs_file: Path,
    eval_embedded: EmbeddedImages,
    backbone: str,
) -> TrainHeadOutcome:
    """Evaluate a trained head on held-out pairs, calibrate it, store it and promote it unless refused.

    Args:
        settings: Where the artifacts (``settings.home``) and the base calibration are.
        options: The run's options (``force``, ``promote`` and ``json_path`` apply here).
        dataset: What the head was trained on (for the report).
        trained: The head and its loss history.
        pairs: Held-out pairs, in at least 2 folds.
        pairs_file: Where ``pairs`` came from (for the report).
        eval_embedded: Backbone embeddings of every image of ``pairs``.
        backbone: The backbone's embedder version.

    Raises:
        DatasetError: The pairs cannot be evaluated.
        CalibrationError: There is no calibration for the backbone.
    """
    from trainer.head_training import evaluate_head, loss_curve_png
    from vigil.models.head import head_space_version, head_to_bytes

    evaluation = evaluate_head(eval_embedded, pairs, trained.head)
    head_bytes = head_to_bytes(trained.head)
    head_space = head_space_version(backbone, head_bytes)
    calibration = _head_calibration(
        _base_calibration(settings, backbone), evaluation, pairs, eval_embedded, head_space, options.seed
    )

    base_accuracy, head_accuracy = evaluation.base.accuracy_mean, evaluation.head.accuracy_mean
    worse = head_accuracy < base_accuracy
    refused = worse and options.promote and not options.force
    comparison = f"held-out accuracy {head_accuracy:.2%} with the head vs {base_accuracy:.2%} without"
    notes = (
        f"promoted with --force although {comparison}" if worse and options.force and options.promote else ""
    )
    figures = _figures(options, dataset, trained, evaluation, pairs_file)
    figures["head_space"] = head_space
    figures["calibration"] = calibration.model_dump(mode="json")
    registry = ArtifactRegistry(settings.home)
    artifact = registry.add(
        "head",
        {
            "head.pt": head_bytes,
            "calibration.json": (calibration.model_dump_json(indent=2) + "\n").encode(),
            "loss.png": loss_curve_png(trained.epoch_losses, f"{options.kind} head, {options.loss} loss"),
            "report.json": (json.dumps(figures, indent=2, allow_nan=False) + "\n").encode(),
            "report.md": _markdown(figures, evaluation).encode(),
        },
        embedder_version=backbone,
        metrics=_metrics(evaluation),
        data=_artifact_data(options, dataset, trained, pairs_file, head_space, calibration),
        notes=notes,
    )
    promoted = options.promote and not refused
    if promoted:
        registry.promote("head", artifact.version)
    figures |= {"artifact": artifact.version, "promoted": promoted, "refused": refused, "notes": notes}
    if options.json_path is not None:
        write_json(options.json_path, figures)
        options.json_path.with_suffix(".md").write_text(_markdown(figures, evaluation), encoding="utf-8")
    if refused:
        summary = (
            f"head not promoted: {comparison} on {pairs_file}; stored as {artifact.version} "
            "(pass --force to promote it anyway)"
        )
    else:
        state = "promoted" if promoted else "stored, not promoted (--no-promote)"
        summary = (
            f"{state}: {artifact.version} ({head_space})\n"
            f"  {comparison}{' (worse, promoted with --force)' if worse and promoted else ''}\n"
            f"  loss {trained.loss_before:.4f} -> {trained.loss_after:.4f}; files in {artifact.folder}"
        )
    return TrainHeadOutcome(artifact, promoted, refused, summary, figures)


def _evaluation_source(options: TrainHeadOptions) -> tuple[Path, Path]:
    """The evaluation pairs file and image folder (the LFW defaults when present)."""
    if (options.eval_pairs is None) != (options.eval_images is None):
        raise DatasetError("give --eval-pairs and --eval-images together (the pairs' image folder)")
    if options.eval_pairs is not None and options.eval_images is not None:
        return options.eval_pairs, options.eval_images
    if DEFAULT_EVAL_PAIRS.is_file() and DEFAULT_EVAL_IMAGES.is_dir():
        return DEFAULT_EVAL_PAIRS, DEFAULT_EVAL_IMAGES
    raise DatasetError(
        f"no held-out evaluation pairs ({DEFAULT_EVAL_PAIRS} not found); "
        "pass --eval-pairs FILE --eval-images DIR with people not in the training set"
    )


def _base_calibration(settings: Settings, backbone: str) -> Calibration:
    """The calibration in force for the backbone: the configured or promoted one, else the shipped one."""
    source = CalibrationSource(settings.indexer, settings.home, backbone)
    for path in dict.fromkeys(
        p for p in (source.path(), shipped_calibration_path(backbone)) if p is not None
    ):
        calibration = read_calibration(path)
        if calibration.embedder_version == backbone:
            logger.info(
                "mapping calibration %s from %s into the head's space", calibration.calibration_id, path
            )
            return calibration
    raise CalibrationError(
        f"no calibration for embedder {backbone} to carry into the head's space; run `vigil calibrate` first"
    )


def _head_calibration(
    base: Calibration,
    evaluation: HeadEvaluation,
    pairs: list[Pair],
    eval_embedded: EmbeddedImages,
    head_space: str,
    seed: int,
) -> Calibration:
    """Map ``base`` on impostor pairs among the evaluation images (people = image folders).

    When the images are not in per-person folders, the pairs file's own impostor pairs are used.
    """
    identities = np.array([str(path.parent) for path in eval_embedded.paths])
    try:
        first, second = sample_impostor_pairs(identities, seed=seed)
        source = "all cross-person pairs of the evaluation images (person = folder)"
    except ValueError:
        row = eval_embedded.row()
        impostor_pairs = [pair for pair in pairs if not pair.same]
        first = np.array([row[pair.path_a.resolve()] for pair in impostor_pairs], dtype=np.int64)
        second = np.array([row[pair.path_b.resolve()] for pair in impostor_pairs], dtype=np.int64)
        source = "the impostor pairs of the evaluation pairs file"
    impostors = ImpostorScores(
        cosine_scores(eval_embedded.embeddings, first, second),
        cosine_scores(evaluation.head_embedded.embeddings, first, second),
    )
    return map_calibration(
        base,
        impostors,
        embedder_version=head_space,
        head_genuine=evaluation.head_genuine,
        data={"impostor_source": source, "sample_seed": seed},
    )


def _figures(
    options: TrainHeadOptions,
    dataset: PeopleDataset,
    trained: TrainedHead,
    evaluation: HeadEvaluation,
    pairs_file: Path,
) -> dict[str, JsonValue]:
    keys = (
        "accuracy_mean",
        "accuracy_std",
        "tar_at_far_1e-3",
        "tar_at_far_1e-2",
        "auc",
        "eer",
        "threshold",
        "pairs",
    )
    base, head = evaluation.base.to_dict(), evaluation.head.to_dict()
    return {
        "dataset": str(options.dataset),
        **_training_summary(options, dataset, trained),
        "epoch_losses": trained.epoch_losses,
        "training_seconds": round(trained.seconds, 1),
        "eval_pairs": str(pairs_file),
        "eval_protocol": EVAL_PROTOCOL,
        "base": {key: base[key] for key in keys},
        "head": {key: head[key] for key in keys},
    }


def _training_summary(
    options: TrainHeadOptions, dataset: PeopleDataset, trained: TrainedHead
) -> dict[str, float | int | str]:
    """What was trained on and how, as both the report and the artifact record it."""
    return {
        "people": len(dataset.names),
        "images": len(dataset.paths),
        "skipped_people": dataset.skipped,
        "excluded_people": dataset.excluded,
        "loss": options.loss,
        "kind": options.kind,
        "epochs": options.epochs,
        "seed": options.seed,
        "loss_before": trained.loss_before,
        "loss_after": trained.loss_after,
    }


def _metrics(evaluation: HeadEvaluation) -> dict[str, float | int | str]:
    metrics: dict[str, float | int | str] = {"eval_pairs": evaluation.base.pairs}
    for name, result in (("base", evaluation.base), ("head", evaluation.head)):
        metrics |= {
            f"{name}_accuracy_mean": result.accuracy_mean,
            f"{name}_accuracy_std": result.accuracy_std,
            f"{name}_tar_at_far_1e-3": result.tar_at_far_1e3,
            f"{name}_auc": result.auc,
        }
    return metrics


def _artifact_data(
    options: TrainHeadOptions,
    dataset: PeopleDataset,
    trained: TrainedHead,
    pairs_file: Path,
    head_space: str,
    calibration: Calibration,
) -> dict[str, float | int | str]:
    return {
        "dataset": str(options.dataset.resolve()),
        **_training_summary(options, dataset, trained),
        "exclude_pairs": str(options.exclude_pairs or ""),
        "eval_pairs": str(pairs_file.resolve()),
        "eval_protocol": EVAL_PROTOCOL,
        "head_space": head_space,
        "calibration": calibration.calibration_id,
    }


def _markdown(figures: dict[str, JsonValue], evaluation: HeadEvaluation) -> str:
    """Base vs head side by side, then what was trained on."""
    rows: list[tuple[str, Callable[[VerificationResult], str]]] = [
        ("Accuracy (mean ± std over folds)", lambda r: f"{r.accuracy_mean:.2%} ± {r.accuracy_std:.2%}"),
        ("TAR @ FAR=1e-3", lambda r: f"{r.tar_at_far_1e3:.2%}"),
        ("TAR @ FAR=1e-2", lambda r: f"{r.tar_at_far_1e2:.2%}"),
        ("AUC", lambda r: f"{r.auc:.4f}"),
        ("EER", lambda r: f"{r.eer:.2%}"),
    ]
    lines = [
        f"## Embedding head: {figures['kind']}, {figures['loss']} loss\n",
        f"Held-out pairs: {figures['eval_pairs']} ({evaluation.base.pairs} pairs, {EVAL_PROTOCOL}).\n",
        "| Metric | Backbone | Backbone + head |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {cell(evaluation.base)} | {cell(evaluation.head)} |" for name, cell in rows),
        "",
        f"Trained on {figures['dataset']}: {figures['people']} people, {figures['images']} images "
        f"({figures['skipped_people']} people with one image skipped, "
        f"{figures['excluded_people']} excluded), "
        f"{figures['epochs']} epochs, seed {figures['seed']}; "
        f"loss {_number(figures['loss_before']):.4f} -> {_number(figures['loss_after']):.4f}.",
    ]
    if "artifact" in figures:
        lines.append(
            f"\nArtifact {figures['artifact']}: {'promoted' if figures['promoted'] else 'not promoted'}."
        )
    if figures.get("notes"):
        lines.append(f"Notes: {figures['notes']}")
    return "\n".join(lines) + "\n"


def _number(value: JsonValue) -> float:
    return float(value) if isinstance(value, int | float) else float("nan")
