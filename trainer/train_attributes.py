"""``vigil train attributes`` and ``vigil bench attributes``: an age/gender head, trained and measured.

Steps:

1. Data: a folder of faces named by the UTKFace convention (:mod:`trainer.attribute_data`);
   other files are skipped and counted.
2. The backbone's embeddings are computed once and cached
   (:func:`~trainer.embedding_cache.embed_dataset`). UTKFace's crops are tight, and MTCNN
   misses a few of them (21 of the 6,000 shared ones): those are embedded whole, resized to
   the chip (the ``whole_image`` fallback), and counted in the report.
3. A fixed-seed 80/20 split by image (UTKFace has no identities, so the same person may be
   on both sides); the head trains on the 80 % (:mod:`trainer.attribute_training`).
4. Held-out figures: age MAE (years), gender accuracy, the age range's coverage, and the
   baselines that ignore the face (always the training mean age, always the majority gender).
5. The head and its report are stored as an ``attributes`` artifact and promoted unless
   ``--no-promote``. ``vigil bench attributes`` runs the same without storing anything.

``--fine-tune-blocks N`` runs the same protocol on the same split for a fine-tuned copy of
the backbone's last N blocks (:mod:`trainer.attribute_tail`), so the two can be compared;
``vigil train attributes`` stores it as an ``attribute_tail`` artifact, which the service runs
with ``streamer.tracker.attribute_model: fine_tuned``.
Every report gives the figures per age band as well (children's gender is much harder).

This module imports torch only when a command runs, so ``vigil`` starts fast.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from trainer.attribute_data import HELD_OUT_FRACTION, AttributeDataset, held_out_split, read_attribute_dataset
from trainer.report import JsonValue, markdown_table, write_json
from vigil.artifacts import Artifact, ArtifactKind, ArtifactRegistry
from vigil.config import Settings
from vigil.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from trainer.attribute_tail import TrainedTail
    from trainer.attribute_training import AttributeEvaluation, TrainedAttributes
    from trainer.embedding_cache import EmbeddedImages
    from vigil.models.attributes import FaceAttributes
    from vigil.models.pipeline import FacePipeline

logger = logging.getLogger(__name__)

DEFAULT_DATASET = Path("../shared/data/utkface")
DEFAULT_BENCH_JSON = Path("bench-results/attributes.json")
DEFAULT_EPOCHS = 60
DEFAULT_TAIL_EPOCHS = 15
PROTOCOL = (
    f"fixed-seed random split by image, {1 - HELD_OUT_FRACTION:.0%} train / "
    f"{HELD_OUT_FRACTION:.0%} held out; UTKFace has no identity labels, so one person may be on both sides"
)
LEVI_HASSNER_BAR = {"gender_accuracy": 0.857, "age_mae_years": 12.2, "mean_age_mae_years": 15.7}
"""The bar issue #6 measured on UTKFace crops with the Levi-Hassner Caffe CNNs (not re-run here)."""


@dataclass(frozen=True)
class TrainAttributesOptions:
    """What ``vigil train attributes`` (or ``vigil bench attributes``) was asked to do."""

    dataset: Path
    epochs: int = DEFAULT_EPOCHS
    seed: int = 0
    limit: int | None = None
    promote: bool = True
    json_path: Path | None = None
    fine_tune_blocks: int = 0
    """Fine-tune a copy of the backbone's last N blocks instead of training a head (0: a head)."""


@dataclass(frozen=True)
class AttributeRun:
    """A trained and evaluated model (a head or a fine-tuned tail), before it is stored.

    Attributes:
        kind: The artifact kind it is stored as (``attributes`` or ``attribute_tail``).
        file_name: Its file inside the artifact.
        model_bytes: The file (:func:`vigil.models.attributes.attributes_to_bytes` or
            :func:`vigil.models.attribute_tail.tail_to_bytes`).
        embedder_version: The backbone it reads.
        evaluation: Held-out figures.
        figures: The JSON report.
    """

    kind: ArtifactKind
    file_name: str
    model_bytes: bytes
    embedder_version: str
    evaluation: AttributeEvaluation
    figures: dict[str, JsonValue] = field(default_factory=dict)


def train_and_evaluate(settings: Settings, options: TrainAttributesOptions) -> AttributeRun:
    """Read the dataset, embed it (cached), split, train and evaluate.

    Raises:
        DatasetError: The folder is missing, holds no UTKFace-named image, is too small, or
            some images cannot be read.
    """
    data = _prepare(settings, options)

    from trainer.attribute_training import AttributeTrainingConfig, train_attribute_head
    from vigil.models.attributes import ATTRIBUTES_FILE, attributes_to_bytes, predict_attributes

    train, held_out = data.train, data.held_out
    config = AttributeTrainingConfig(epochs=options.epochs, seed=options.seed)
    trained = train_attribute_head(
        data.embedded.embeddings[train], data.dataset.ages[train], data.dataset.female[train], config
    )
    evaluation = data.evaluate(predict_attributes(trained.head, data.embedded.embeddings[held_out]))
    version = data.pipeline.embedder.version
    model = f"MLP head on the frozen {version} embeddings (what Vigil runs)"
    figures = _figures(options, data, trained, evaluation, model)
    model_bytes = attributes_to_bytes(trained.head, version)
    return AttributeRun("attributes", ATTRIBUTES_FILE, model_bytes, version, evaluation, figures)


def fine_tune_and_evaluate(settings: Settings, options: TrainAttributesOptions) -> AttributeRun:
    """The same protocol as :func:`train_and_evaluate` for a fine-tuned copy of the backbone's last blocks.

    The copy is of dlib's ResNet as Vigil ships it, whatever embedder matches faces: its
    chips are cut in dlib's layout from the same detections (:mod:`vigil.models.attribute_tail`).

    Returns:
        The tail, trained on the training split, and its held-out figures.

    Raises:
        DatasetError: As :func:`train_and_evaluate`.
        ConfigError: The backbone has fewer blocks than asked for (checked before the data loads).
    """
    from trainer.attribute_tail import (
        TailTrainingConfig,
        predict_tail,
        train_attribute_tail,
        trunk_activations,
    )
    from trainer.embedding_cache import face_chips
    from vigil.models.attribute_tail import (
        TAIL_BACKBONE,
        TAIL_FILE,
        load_tail_backbone,
        tail_aligner,
        tail_to_bytes,
    )
    from vigil.models.attributes import attributes_from_outputs

    backbone = load_tail_backbone(settings.cache_dir)
    config = TailTrainingConfig(blocks=options.fine_tune_blocks, epochs=options.epochs, seed=options.seed)
    if not 1 <= config.blocks <= len(backbone.blocks):
        raise ConfigError(
            f"--fine-tune-blocks must be between 1 and {len(backbone.blocks)}, got {config.blocks}"
        )
    data = _prepare(settings, options)
    chips = face_chips(tail_aligner(settings.aligner), data.embedded)
    activations = trunk_activations(backbone, chips, len(backbone.blocks) - config.blocks)
    train, held_out = data.train, data.held_out
    trained = train_attribute_tail(
        backbone, activations[train], data.dataset.ages[train], data.dataset.female[train], config
    )
    evaluation = data.evaluate(attributes_from_outputs(predict_tail(trained.tail, activations[held_out])))
    model = f"fine-tuned copy of the last {config.blocks} of {len(backbone.blocks)} blocks of {TAIL_BACKBONE}"
    figures = _figures(options, data, trained, evaluation, model)
    model_bytes = tail_to_bytes(trained.tail, backbone)
    return AttributeRun("attribute_tail", TAIL_FILE, model_bytes, TAIL_BACKBONE, evaluation, figures)


@dataclass(frozen=True)
class _Prepared:
    """A dataset split and embedded, ready for a model to train on."""

    dataset: AttributeDataset
    train: npt.NDArray[np.int64]
    held_out: npt.NDArray[np.int64]
    pipeline: FacePipeline
    embedded: EmbeddedImages

    def evaluate(self, predicted: Sequence[FaceAttributes]) -> AttributeEvaluation:
        """Held-out figures of a model's answers for the held-out faces, in their order."""
        from trainer.attribute_training import evaluate_predictions

        ages, female = self.dataset.ages, self.dataset.female
        return evaluate_predictions(
            predicted,
            ages[self.held_out],
            female[self.held_out],
            train_ages=ages[self.train],
            train_female=female[self.train],
        )


def _prepare(settings: Settings, options: TrainAttributesOptions) -> _Prepared:
    """Read and split the dataset, then load the models and embed it (cached)."""
    dataset = read_attribute_dataset(options.dataset, options.limit, options.seed)
    train, held_out = held_out_split(len(dataset.paths), options.seed)

    # torch and the models load only once the inputs are known to be good.
    from trainer.embedding_cache import embed_dataset
    from vigil.models.pipeline import FacePipeline

    pipeline = FacePipeline.from_settings(settings)
    pipeline.load()
    embedded = embed_dataset(
        settings, pipeline, dataset.paths, dataset.root, use_cache=True, fallback="whole_image"
    )
    return _Prepared(dataset, train, held_out, pipeline, embedded)


def run_train_attributes(settings: Settings, options: TrainAttributesOptions) -> tuple[Artifact, str]:
    """Train, evaluate and store an attribute head (or a fine-tuned tail); promote it unless told not to.

    Returns:
        The stored artifact and a summary for the terminal.

    Raises:
        DatasetError: See :func:`train_and_evaluate`.
        ConfigError: See :func:`run_attributes_bench`.
    """
    run = _train(settings, options)
    registry = ArtifactRegistry(settings.home)
    markdown = attributes_markdown(run.figures)
    artifact = registry.add(
        run.kind,
        {
            run.file_name: run.model_bytes,
            "report.json": (json.dumps(run.figures, indent=2, allow_nan=False) + "\n").encode(),
            "report.md": markdown.encode(),
        },
        embedder_version=run.embedder_version,
        metrics=run.evaluation.metrics(),
        data={
            "dataset": str(options.dataset.resolve()),
            "images": _int(run.figures["images"]),
            "skipped_files": _int(run.figures["skipped_files"]),
            "epochs": options.epochs,
            "seed": options.seed,
            "protocol": PROTOCOL,
            "detector": str(run.figures["detector"]),  # the landmarks the chips or embeddings came from
            **({"fine_tune_blocks": options.fine_tune_blocks} if options.fine_tune_blocks else {}),
        },
    )
    if options.promote:
        registry.promote(run.kind, artifact.version)
    figures = {**run.figures, "artifact": artifact.version, "promoted": options.promote}
    if options.json_path is not None:
        write_json(options.json_path, figures)
        options.json_path.with_suffix(".md").write_text(attributes_markdown(figures), encoding="utf-8")
    state = "promoted" if options.promote else "stored, not promoted (--no-promote)"
    return (
        artifact,
        f"{state}: {artifact.version}\n{_summary_line(run.evaluation)}\n  files in {artifact.folder}",
    )


def attributes_markdown(figures: dict[str, JsonValue]) -> str:
    """The report: held-out figures beside the baselines and the Levi-Hassner bar, then the data."""
    held_out = figures["held_out"]
    assert isinstance(held_out, dict)
    by_age = held_out.get("by_age", [])
    assert isinstance(by_age, list)
    rows = [
        ("Model", str(figures.get("model", "head on the frozen embeddings"))),
        ("Held-out faces", str(held_out["faces"])),
        ("Age MAE (years)", f"{_float(held_out['age_mae_years']):.2f}"),
        ("Gender accuracy", f"{_float(held_out['gender_accuracy']):.2%}"),
        ("Age range coverage (nominal 80 %)", f"{_float(held_out['age_range_coverage']):.2%}"),
        ("Baseline: always the mean age, MAE (years)", f"{_float(held_out['mean_age_mae_years']):.2f}"),
        ("Baseline: always the majority gender", f"{_float(held_out['majority_gender_accuracy']):.2%}"),
        (
            "Bar: Levi-Hassner CNNs on UTKFace (issue #6, not re-run)",
            f"gender {LEVI_HASSNER_BAR['gender_accuracy']:.1%}, MAE {LEVI_HASSNER_BAR['age_mae_years']}",
        ),
    ]
    rows += [
        (
            f"Ages {band['ages']} ({band['faces']} faces)",
            f"gender {_float(band['gender_accuracy']):.2%}, MAE {_float(band['age_mae_years']):.2f}",
        )
        for band in by_age
        if isinstance(band, dict)
    ]
    lines = [
        "## Age and gender model\n",
        markdown_table(rows),
        f"Data: {figures['dataset']}: {figures['images']} images named by the UTKFace convention "
        f"({figures['skipped_files']} other files skipped); {figures['no_face']} without a face found by "
        f"{figures['detector']} were embedded whole. Embeddings: {figures['embedder_version']}.",
        f"Protocol: {figures['protocol']}; seed {figures['seed']}, {figures['train_images']} training "
        f"images ({figures['calibration_faces']} of them kept aside to calibrate the age range, "
        f"spread scale {_float(figures['spread_scale']):.2f}), {figures['epochs']} epochs "
        f"({_float(figures['training_seconds']):.0f} s on the CPU).",
    ]
    if "artifact" in figures:
        lines.append(
            f"\nArtifact {figures['artifact']}: {'promoted' if figures['promoted'] else 'not promoted'}."
        )
    return "\n".join(lines) + "\n"


def run_attributes_bench(settings: Settings, options: TrainAttributesOptions) -> dict[str, JsonValue]:
    """``vigil bench attributes``: train and evaluate a head, or a fine-tuned tail, without storing it.

    Returns:
        The JSON report (:func:`attributes_markdown` renders it).

    Raises:
        ConfigError: See :func:`fine_tune_and_evaluate`.
        DatasetError: See :func:`train_and_evaluate`.
    """
    return _train(settings, options).figures


def _train(settings: Settings, options: TrainAttributesOptions) -> AttributeRun:
    """A head, or with ``fine_tune_blocks`` a tail, trained and evaluated."""
    if options.fine_tune_blocks:
        return fine_tune_and_evaluate(settings, options)
    return train_and_evaluate(settings, options)


def _figures(
    options: TrainAttributesOptions,
    data: _Prepared,
    trained: TrainedAttributes | TrainedTail,
    evaluation: AttributeEvaluation,
    model: str,
) -> dict[str, JsonValue]:
    return {
        "model": model,
        "dataset": str(options.dataset),
        "images": len(data.dataset.paths),
        "skipped_files": data.dataset.skipped,
        "no_face": int((~data.embedded.detected).sum()),
        "embedder_version": data.pipeline.embedder.version,
        "detector": data.pipeline.detector.name,
        "protocol": PROTOCOL,
        "seed": options.seed,
        "train_images": len(data.train),
        "epochs": options.epochs,
        "calibration_faces": trained.calibration_faces,
        "spread_scale": round(trained.spread_scale, 3),
        "training_seconds": round(trained.seconds, 1),
        "loss_first_epoch": round(trained.epoch_losses[0], 4),
        "loss_last_epoch": round(trained.epoch_losses[-1], 4),
        "held_out": evaluation.to_dict(),
        "levi_hassner_bar": dict(LEVI_HASSNER_BAR),
    }


def _summary_line(evaluation: AttributeEvaluation) -> str:
    return (
        f"  held-out ({evaluation.faces} faces): age MAE {evaluation.age_mae_years:.2f} years "
        f"(always the mean age: {evaluation.mean_age_mae_years:.2f}), "
        f"gender {evaluation.gender_accuracy:.2%} "
        f"(always the majority: {evaluation.majority_gender_accuracy:.2%})"
    )


def _float(value: JsonValue) -> float:
    return float(value) if isinstance(value, int | float) else float("nan")


def _int(value: JsonValue) -> int:
    return int(value) if isinstance(value, int | float) else 0
