"""``vigil calibrate``: decision thresholds fitted to a target false-accept rate on the user's data.

Data, one of:

- ``--pairs FILE --images DIR``: a pairs list in LFW ``pairs.txt`` or plain
  ``path_a path_b same [fold]`` format (``trainer.pairs``); every listed pair is scored.
  Pairs sets are usually face crops, so an image where MTCNN finds no face is embedded
  whole (resized to the chip), as ``vigil bench pairs`` does.
- ``--from-dir PEOPLE_DIR``: one sub-folder of photos per person (``trainer.people_dir``).
  Genuine pairs are every two photos of one person, impostor pairs every two photos of
  different people (beyond 2M of a kind, a seeded random sample). Photos without a
  detected face are left out: the service never matches those.

A pair's score is the cosine similarity of the configured pipeline's embeddings (the
embedder version is recorded in the calibration).

With ``--with-feedback`` the corrections kept by ``vigil feedback`` join the pairs
(:mod:`trainer.feedback_scores`): ``--not`` faces as impostor pairs, ``--is`` faces as
genuine ones, each scored against the person's best (other) template. They move the
verification threshold and the impostor-distribution rules; the open-set protocol's rules
come from the folder alone.

Verification (1:1) threshold: the lowest threshold whose FAR on the impostor pairs is at
most the target (``trainer.thresholds.fit_verification``), rounded up to 4 decimals, with
the FAR and TAR it achieves and a 95 % Clopper-Pearson (exact binomial) interval on the
FAR from its false accepts and the number of impostor pairs. The interval treats pairs as
independent; pairs built from a folder share photos, so there the real uncertainty is
somewhat wider.

How much data: a target FAR needs at least ``ln(0.05) / ln(1 - FAR)`` impostor pairs, about
``3 / FAR`` (the "rule of three"; 2995 for 1e-3): only then would zero false accepts show,
at 95 % confidence, that the FAR is at or below the target. With fewer, calibration stops
before embedding anything, saying how many are needed.

Identification (open-set) rules, threshold + margin, for the target and for the
configured ``indexer.target_fpir`` (the rule set the service selects; if the data cannot
support it, promotion is refused rather than leaving the service without a rule):

- open-set protocol, for ``--from-dir`` with at least :data:`MIN_OPEN_SET_PEOPLE` people
  enrolled and enough strangers: as ``vigil bench identify``, the first photo of each
  person with two or more is enrolled and the others probe; strangers are the
  single-photo people plus, when they give too few probes, a seeded share (at most half)
  of the others, held out. Rules are fitted per gallery size by
  ``trainer.bench_identify.fit_by_gallery_size`` (threshold at the target FPIR, the
  smallest margin keeping misidentifications at or below 0.1 %), in sample.
- impostor distribution, for pairs files and smaller folders: a stranger compared with
  ``N`` enrolled people is accepted when any comparison clears the threshold; with
  independent comparisons ``FPIR = 1 - (1 - p) ** N``, so the rule for ``N`` people is
  the verification threshold at the per-comparison FAR ``p = 1 - (1 - target) ** (1/N)``,
  margin 0 (``trainer.thresholds.rules_from_impostors``). Sizes are fitted while the
  impostor pairs support ``p``; a bigger gallery falls back on the largest size's rule,
  so its FPIR exceeds the target (the report says up to which size the rules hold). A
  stranger's scores against different people are positively correlated in practice,
  which keeps the real FPIR below the formula's: the rule errs on the strict side.

The calibration is stored as a versioned artifact (``vigil.artifacts``) and, unless
``promote`` is off, promoted: copied to ``$VIGIL_HOME/calibration/current.json``, which
the indexer and a running service reload on change. Reports beside the results JSON:
a Markdown summary to paste into a ticket, and ROC, DET and score histogram PNGs.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from indexer.calibration import Calibration, VerificationCalibration
from indexer.gallery import Gallery
from trainer.bench_identify import (
    GALLERY_SIZES,
    OpenSetSplit,
    embed_split,
    fit_by_gallery_size,
    identification_rules,
)
from trainer.embedding_cache import EmbeddedImages, embed_dataset
from trainer.feedback_scores import FeedbackScores, feedback_scores
from trainer.lfw import pair_scores
from trainer.metrics import auc, roc_curve
from trainer.openset import OperatingPoint
from trainer.pairs import Pair, read_pairs
from trainer.people_dir import MAX_PAIRS, PeopleDir, cosine_scores, pair_indices, read_people_dir
from trainer.report import JsonValue, markdown_table, plot_det, plot_roc, plot_score_histograms, write_json
from trainer.thresholds import (
    VerificationFit,
    fit_verification,
    min_impostor_pairs,
    require_impostor_pairs,
)
from trainer.thresholds import rules_from_impostors as fit_from_impostors
from vigil.artifacts import CALIBRATION_FILE, ArtifactRegistry
from vigil.config import Settings
from vigil.errors import CalibrationError, DatasetError
from vigil.machine import cpu_model
from vigil.models.pipeline import FacePipeline
from vigil.typing import FloatArray

logger = logging.getLogger(__name__)

MIN_OPEN_SET_PEOPLE = 10
"""Fewest people enrolled for the open-set protocol: fewer make galleries too small to fit."""
SEED = 0
"""Seed of the held-out strangers, pair sampling and random galleries: re-runs agree."""
OPEN_SET = "open-set protocol"
IMPOSTOR_DISTRIBUTION = "impostor score distribution"
_METHOD_NOTES = {
    OPEN_SET: "first photo of each person enrolled, the others probe, strangers held out; fitted in sample",
    IMPOSTOR_DISTRIBUTION: "for N enrolled, the threshold at a per-comparison FAR of 1 - (1 - target)^(1/N), "
    "margin 0; DIR is the TAR at that threshold",
}


@dataclass(frozen=True)
class PairsFile:
    """``--pairs FILE --images DIR``: a pairs list and the folder its paths are relative to."""

    pairs_file: Path
    images_dir: Path


@dataclass(frozen=True)
class PeopleFolder:
    """``--from-dir PEOPLE_DIR``: one sub-folder of photos per person."""

    root: Path


CalibrationSet = PairsFile | PeopleFolder


@dataclass(frozen=True)
class CalibrationResult:
    """A finished calibration.

    Attributes:
        calibration: What was written.
        version: The artifact version it is stored under.
        promoted: Whether it is now the calibration in force.
        figures: The results JSON's contents.
        summary: A few lines for the terminal.
    """

    calibration: Calibration
    version: str
    promoted: bool
    figures: dict[str, JsonValue]
    summary: str


def run_calibration(
    settings: Settings,
    data: CalibrationSet,
    json_path: Path,
    *,
    target_far: float,
    promote: bool = True,
    use_cache: bool = True,
    feedback_from: Gallery | None = None,
) -> CalibrationResult:
    """Score the pairs of ``data``, fit the thresholds, store (and promote) the calibration, report.

    Args:
        settings: Models, ``home`` (artifacts, embedding cache) and ``indexer.target_fpir``.
        data: The pairs file or folder-per-person dataset.
        json_path: Results JSON; the Markdown summary and PNGs are written beside it.
        target_far: The false accept rate to meet, in ``(0, 1)``.
        promote: Whether to put the calibration in force.
        use_cache: Whether to read and write the embedding cache.
        feedback_from: Also score this gallery's corrections (``vigil feedback``) as pairs
            (:mod:`trainer.feedback_scores`): ``--is`` genuine, ``--not`` impostor.

    Returns:
        The calibration, its version and the report figures.

    Raises:
        DatasetError: The data is missing or malformed (the message says what to fix).
        CalibrationError: The data cannot support the target FAR (or the configured
            ``indexer.target_fpir`` when promoting).
    """
    started = time.monotonic()
    source = _read(data)
    require_impostor_pairs(target_far, source.impostor_pairs)  # before the slow part
    targets = _rule_targets(target_far, settings.indexer.target_fpir, source.impostor_pairs, promote=promote)

    pipeline = FacePipeline.from_settings(settings)
    pipeline.load()
    scored, open_set = source.score(settings, pipeline, min(targets), use_cache=use_cache)
    if feedback_from is not None:
        scored = _with_feedback(scored, feedback_scores(feedback_from, pipeline.embedder.version))
    fit = fit_verification(scored.genuine, scored.impostor, target_far)
    if open_set is not None:
        split, embedded = open_set
        method = OPEN_SET
        by_split = embed_split(embedded, split)
        rule_sets = {target: fit_by_gallery_size(by_split, target, seed=SEED) for target in targets}
        known, unknown = len(split.known), len(split.unknown)
    else:
        method = IMPOSTOR_DISTRIBUTION
        rule_sets = {
            target: fit_from_impostors(scored.genuine, scored.impostor, target, GALLERY_SIZES)
            for target in targets
        }
        known, unknown = fit.genuine_pairs, fit.impostor_pairs
    _check_finite(rule_sets)

    calibration = _calibration(pipeline.embedder.version, fit, rule_sets, known, unknown, scored, method)
    registry = ArtifactRegistry(settings.home)
    artifact = registry.add(
        "calibration",
        {CALIBRATION_FILE: (calibration.model_dump_json(indent=2) + "\n").encode()},
        embedder_version=calibration.embedder_version,
        metrics=_artifact_metrics(fit, calibration),
        data={key: value for key, value in calibration.data.items() if key != "protocol"},
    )
    figures = _figures(
        calibration, fit, scored, artifact.version, promote, json_path, time.monotonic() - started
    )
    write_json(json_path, figures)
    _plots(scored, fit, json_path, calibration.embedder_version)
    json_path.with_suffix(".md").write_text(_markdown(figures), encoding="utf-8")
    if promote:  # last: a calibration goes in force only once its reports are written
        registry.promote("calibration", artifact.version)
    return CalibrationResult(calibration, artifact.version, promote, figures, _summary(figures, json_path))


def plot_paths(json_path: Path) -> dict[str, Path]:
    """Where the ROC, DET and score histogram PNGs of the results ``json_path`` go."""
    return {kind: json_path.with_name(f"{json_path.stem}-{kind}.png") for kind in ("roc", "det", "scores")}


# ----------------------------------------------------------------------------- private helpers


_OpenSet = tuple[OpenSetSplit, EmbeddedImages]


@dataclass(frozen=True)
class _Scored:
    """Scored pairs and where they came from."""

    genuine: FloatArray
    impostor: FloatArray
    images: int
    no_face_count: int
    no_face_handling: str
    dataset: str
    protocol: str
    pairs_sampled: bool
    feedback_pairs: tuple[int, int] = (0, 0)
    """Of the pairs, how many genuine and impostor ones are ``vigil feedback`` corrections."""


@dataclass(frozen=True)
class _PairsData:
    """A checked pairs list, not embedded yet."""

    source: PairsFile
    pairs: list[Pair]

    @property
    def impostor_pairs(self) -> int:
        return sum(not pair.same for pair in self.pairs)

    def score(
        self, settings: Settings, pipeline: FacePipeline, lowest_target: float, *, use_cache: bool
    ) -> tuple[_Scored, _OpenSet | None]:
        """Every listed pair's score; images without a face are embedded whole."""
        paths = [path for pair in self.pairs for path in (pair.path_a, pair.path_b)]
        embedded = embed_dataset(
            settings, pipeline, paths, self.source.images_dir, use_cache=use_cache, fallback="whole_image"
        )
        scores = pair_scores(embedded, self.pairs, "cosine")
        same = np.array([pair.same for pair in self.pairs])
        folds = len({pair.fold for pair in self.pairs})
        scored = _Scored(
            genuine=scores[same],
            impostor=scores[~same],
            images=len(embedded.paths),
            no_face_count=int((~embedded.detected).sum()),
            no_face_handling="embedded whole, as the face chip",
            dataset=f"pairs file {self.source.pairs_file} ({len(self.pairs)} pairs in {folds} fold(s)), "
            f"images {self.source.images_dir}",
            protocol="every listed pair scored; cosine similarity of the embeddings",
            pairs_sampled=False,
        )
        return scored, None


@dataclass(frozen=True)
class _PeopleData:
    """A checked folder-per-person dataset, not embedded yet."""

    people: PeopleDir

    @property
    def impostor_pairs(self) -> int:
        return min(self.people.impostor_pair_count, MAX_PAIRS)

    def score(
        self, settings: Settings, pipeline: FacePipeline, lowest_target: float, *, use_cache: bool
    ) -> tuple[_Scored, _OpenSet | None]:
        """Every (or a sample of) genuine and impostor pair; the open-set split when it applies."""
        people = self.people
        embedded = embed_dataset(settings, pipeline, people.images, people.root, use_cache=use_cache)
        row = embedded.row()
        no_face = [image for image in people.images if not embedded.detected[row[image.resolve()]]]
        if no_face:
            logger.warning(
                "%d photos without a detected face are left out (first: %s)", len(no_face), no_face[0]
            )
        kept = people.keep(set(people.images) - set(no_face))
        indices = pair_indices(kept.labels(), seed=SEED)
        embeddings = embedded.embeddings[[row[image.resolve()] for image in kept.images]]
        sample = " (seeded random sample)" if indices.sampled else ""
        scored = _Scored(
            genuine=cosine_scores(embeddings, indices.genuine),
            impostor=cosine_scores(embeddings, indices.impostor),
            images=len(kept.images),
            no_face_count=len(no_face),
            no_face_handling="left out",
            dataset=f"folder {people.root} ({len(kept.people)} people)",
            protocol=(
                "genuine pairs: every two photos of a person; impostor pairs: every two photos of "
                f"different people{sample}; cosine similarity of the embeddings; the FAR interval "
                "assumes independent pairs, which pairs sharing photos are not: the real uncertainty is wider"
            ),
            pairs_sampled=indices.sampled,
        )
        split = _open_set_split(kept, min_impostor_pairs(lowest_target))
        return scored, (split, embedded) if split is not None else None


def _with_feedback(scored: _Scored, feedback: FeedbackScores) -> _Scored:
    """``scored`` with the corrections' scores added to its genuine and impostor pairs."""
    if feedback.unscored:
        logger.warning(
            "%d corrections are of people with no other template of this embedder: not scored",
            feedback.unscored,
        )
    counts = (feedback.genuine.size, feedback.impostor.size)
    return replace(
        scored,
        genuine=np.concatenate([scored.genuine, feedback.genuine]),
        impostor=np.concatenate([scored.impostor, feedback.impostor]),
        protocol=f"{scored.protocol}; plus {counts[0]} genuine and {counts[1]} impostor pairs from "
        "`vigil feedback` corrections (each face against the person's best other template)",
        feedback_pairs=counts,
    )


def _read(data: CalibrationSet) -> _PairsData | _PeopleData:
    """The pairs of a pairs file, or the people of a folder; checked, nothing embedded."""
    if isinstance(data, PeopleFolder):
        return _PeopleData(read_people_dir(data.root))
    pairs = read_pairs(data.pairs_file, data.images_dir)
    genuine = sum(pair.same for pair in pairs)
    if genuine == 0 or genuine == len(pairs):
        kind = "genuine (same person)" if genuine == 0 else "impostor (different people)"
        raise DatasetError(f"{data.pairs_file} lists no {kind} pairs; a calibration needs both kinds")
    return _PairsData(data, pairs)


def _rule_targets(target_far: float, configured: float, impostor_pairs: int, *, promote: bool) -> list[float]:
    """The targets to fit identification rules for: ``target_far`` and the service's target FPIR."""
    if math.isclose(configured, target_far, rel_tol=1e-6):
        return [target_far]
    if impostor_pairs >= min_impostor_pairs(configured):
        return sorted({target_far, configured}, reverse=True)
    if promote:
        raise CalibrationError(
            f"the service uses the rules for indexer.target_fpir={configured:g}, which need at least "
            f"{min_impostor_pairs(configured)} impostor pairs (the data gives {impostor_pairs}); "
            f"set indexer.target_fpir to {target_far:g} or pass --no-promote"
        )
    logger.warning(
        "no rules for indexer.target_fpir=%g (the data is too small): this calibration cannot be "
        "promoted while the service uses that target",
        configured,
    )
    return [target_far]


def _open_set_split(people: PeopleDir, unknown_needed: int) -> OpenSetSplit | None:
    """Enrol the first photo of each person with two or more; strangers: single-photo people and
    a seeded share (at most half) of the others. None when too few are enrolled or strangers."""
    multi = [name for name, images in people.people.items() if len(images) >= 2]
    unknown = [people.people[name][0] for name in people.single_image_people]
    held_out: set[str] = set()
    for name in np.random.default_rng(SEED).permutation(multi).tolist():
        if len(unknown) >= unknown_needed or len(held_out) >= len(multi) // 2:
            break
        held_out.add(name)
        unknown.extend(people.people[name])
    enrolled = [name for name in multi if name not in held_out]
    if len(enrolled) < MIN_OPEN_SET_PEOPLE or len(unknown) < unknown_needed:
        logger.info(
            "open-set protocol needs %d people enrolled and %d stranger photos (have %d and %d): "
            "identification rules come from the impostor score distribution",
            MIN_OPEN_SET_PEOPLE,
            unknown_needed,
            len(enrolled),
            len(unknown),
        )
        return None
    return OpenSetSplit(
        gallery=[(name, people.people[name][0]) for name in enrolled],
        known=[(name, image) for name in enrolled for image in people.people[name][1:]],
        unknown=unknown,
    )


def _check_finite(rule_sets: dict[float, list[tuple[int, OperatingPoint]]]) -> None:
    for target, fitted in rule_sets.items():
        if not all(math.isfinite(point.threshold) for _, point in fitted):
            raise CalibrationError(
                f"no identification threshold meets FPIR {target:g}: too many strangers tie at the top "
                "score (duplicate photos of different people?); check the data"
            )


def _calibration(
    embedder_version: str,
    fit: VerificationFit,
    rule_sets: dict[float, list[tuple[int, OperatingPoint]]],
    known: int,
    unknown: int,
    scored: _Scored,
    method: str,
) -> Calibration:
    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    digest = hashlib.sha256(f"{embedder_version}{fit}{rule_sets}{created_at}".encode()).hexdigest()[:8]
    return Calibration(
        calibration_id=f"calibrate-{digest}",
        created_at=created_at,
        embedder_version=embedder_version,
        identification=identification_rules(rule_sets, known_probes=known, unknown_probes=unknown),
        verification=VerificationCalibration(
            threshold=fit.threshold,
            target_far=fit.target_far,
            far=fit.far,
            tar=fit.tar,
            genuine_pairs=fit.genuine_pairs,
            impostor_pairs=fit.impostor_pairs,
        ),
        data={
            "dataset": scored.dataset,
            "protocol": scored.protocol,
            "identification_method": method,
            "genuine_pairs": fit.genuine_pairs,
            "impostor_pairs": fit.impostor_pairs,
            "false_accepts": fit.false_accepts,
            "far_ci_low": fit.far_ci_low,
            "far_ci_high": fit.far_ci_high,
            "far_ci": f"{fit.confidence:.0%} Clopper-Pearson (exact binomial)",
            "images": scored.images,
            "no_face_count": scored.no_face_count,
            "no_face_handling": scored.no_face_handling,
            "feedback_genuine_pairs": scored.feedback_pairs[0],
            "feedback_impostor_pairs": scored.feedback_pairs[1],
        },
    )


def _artifact_metrics(fit: VerificationFit, calibration: Calibration) -> dict[str, float | int | str]:
    rules = calibration.for_target(fit.target_far)
    return {
        "target_far": fit.target_far,
        "threshold": fit.threshold,
        "far": fit.far,
        "far_ci_low": fit.far_ci_low,
        "far_ci_high": fit.far_ci_high,
        "tar": fit.tar,
        "identification_threshold": rules.threshold,
        "identification_margin": rules.margin,
        "identification_gallery_identities": rules.gallery_identities,
    }


def _figures(
    calibration: Calibration,
    fit: VerificationFit,
    scored: _Scored,
    version: str,
    promoted: bool,
    json_path: Path,
    seconds: float,
) -> dict[str, JsonValue]:
    far, tar, _ = roc_curve(*_scores_and_labels(scored))
    figures: dict[str, JsonValue] = {
        "calibration_id": calibration.calibration_id,
        "calibration_version": version,
        "promoted": promoted,
        "embedder": calibration.embedder_version,
        **asdict(fit),
        "min_impostor_pairs": min_impostor_pairs(fit.target_far),
        "auc": auc(far, tar),
        **calibration.data,
        "pairs_sampled": scored.pairs_sampled,
        "identification": [rules.model_dump(mode="json") for rules in calibration.identification],
        "plots": {kind: path.name for kind, path in plot_paths(json_path).items()},
        "seconds": round(seconds, 1),
        "machine": cpu_model(),
        "torch_threads": torch.get_num_threads(),
    }
    return figures


def _scores_and_labels(scored: _Scored) -> tuple[FloatArray, np.ndarray]:
    scores = np.concatenate([scored.genuine, scored.impostor])
    labels = np.concatenate([np.ones(scored.genuine.size, bool), np.zeros(scored.impostor.size, bool)])
    return scores, labels


def _plots(scored: _Scored, fit: VerificationFit, json_path: Path, embedder_version: str) -> None:
    paths = plot_paths(json_path)
    far, tar, _ = roc_curve(*_scores_and_labels(scored))
    rate_min = 1.0 / fit.impostor_pairs
    label = f"Vigil {embedder_version}"
    plot_roc(far, tar, paths["roc"], label=label, title="Calibration ROC", far_min=rate_min)
    plot_det(
        far,
        1.0 - tar,
        paths["det"],
        label=label,
        title="Calibration DET",
        rate_min=min(rate_min, 1.0 / fit.genuine_pairs, 0.01),
        operating_far=fit.far if fit.far > 0 else rate_min,
    )
    plot_score_histograms(
        scored.genuine, scored.impostor, paths["scores"], threshold=fit.threshold, title="Calibration scores"
    )


def _markdown(figures: dict[str, JsonValue]) -> str:
    """The summary a user pastes into a ticket."""
    method = str(figures["identification_method"])
    rows = [
        ("Calibration", f"{figures['calibration_id']} (version {figures['calibration_version']})"),
        ("In force", "yes (promoted)" if figures["promoted"] else "no (--no-promote)"),
        ("Embedder", str(figures["embedder"])),
        ("Data", str(figures["dataset"])),
        (
            "Pairs",
            f"{figures['genuine_pairs']:,} genuine, {figures['impostor_pairs']:,} impostor (of them from "
            f"`vigil feedback`: {figures.get('feedback_genuine_pairs', 0)} genuine, "
            f"{figures.get('feedback_impostor_pairs', 0)} impostor)",
        ),
        (
            "Images",
            f"{figures['images']:,} ({figures['no_face_count']} without a detected face: "
            f"{figures['no_face_handling']})",
        ),
        ("Target FAR", f"{figures['target_far']:g}"),
        ("Impostor pairs this target needs (about 3/FAR)", f"{figures['min_impostor_pairs']:,}"),
        ("Verification threshold (cosine, accept ≥)", f"{figures['threshold']:.4f}"),
        (
            "FAR achieved",
            f"{_percent(figures['far'])} ({figures['false_accepts']} of {figures['impostor_pairs']:,}; "
            f"{figures['far_ci']}: {_percent(figures['far_ci_low'])} to {_percent(figures['far_ci_high'])})",
        ),
        ("TAR at the threshold", _percent(figures["tar"])),
        ("AUC", f"{figures['auc']:.4f}"),
    ]
    text = "## Vigil calibration\n\n" + markdown_table(rows)
    text += f"\nProtocol: {figures['protocol']}.\n"
    text += f"\nIdentification rules ({figures['identification_method']}; {_METHOD_NOTES[method]}):\n\n"
    rule_rows = []
    identification = figures["identification"]
    assert isinstance(identification, list)
    for rules in identification:
        assert isinstance(rules, dict)
        for size in [*rules["by_gallery_size"], rules]:
            rule_rows.append(
                (
                    f"FPIR {rules['target_fpir']:g}, up to {size['gallery_identities']} enrolled",
                    f"{size['threshold']:.4f} / {size['margin']:.2f} (FPIR {_percent(size['fpir'])}, "
                    f"DIR {_percent(size['dir'])})",
                )
            )
        rule_rows.append(
            (
                f"FPIR {rules['target_fpir']:g}, over {rules['gallery_identities']} enrolled",
                "the largest size's rule: FPIR above the target, calibrate on more data",
            )
        )
    text += markdown_table(rule_rows, header=("Target, gallery", "Threshold / margin"))
    plots = figures["plots"]
    assert isinstance(plots, dict)
    text += "\nPlots: " + ", ".join(str(name) for name in plots.values()) + "\n"
    return text


def _percent(value: JsonValue) -> str:
    assert isinstance(value, int | float)
    return f"{value:.3%}" if value < 0.01 else f"{value:.2%}"


def _summary(figures: dict[str, JsonValue], json_path: Path) -> str:
    state = "promoted: in force now" if figures["promoted"] else "stored, not promoted"
    return (
        f"calibration {figures['calibration_version']} ({state})\n"
        f"  verification threshold {figures['threshold']:.4f}: FAR {_percent(figures['far'])} "
        f"(95% CI {_percent(figures['far_ci_low'])} to {_percent(figures['far_ci_high'])}, "
        f"{figures['impostor_pairs']:,} impostor pairs), TAR {_percent(figures['tar'])} "
        f"({figures['genuine_pairs']:,} genuine pairs)\n"
        f"reports: {json_path}, {json_path.with_suffix('.md')}, "
        + ", ".join(str(path) for path in plot_paths(json_path).values())
    )
