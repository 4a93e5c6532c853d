"""``vigil bench identify``: open-set identification on LFW, and the default calibration.

Protocol (the issue's, close to the LFW open-set protocols of Best-Rowden et al. 2014):

- gallery: the first image (by file name) of every person with at least two images;
- known probes: the other images of those people;
- unknown probes: every image of the people with a single image (nobody in the gallery).

Each probe is searched with Vigil's own ``TemplateIndex`` (exact cosine search, per
identity). Reported: rank-1 accuracy on known probes, DIR at FPIR 1 % and 0.1 % (threshold
from the unknown probes' scores, margin 0), the DIR-vs-FPIR curve as a PNG, and what the
decision rule in force (calibration or configuration) achieves. Every image is scored:
where MTCNN finds no face the mean landmark layout is used, as in ``vigil bench lfw``.

With ``calibration_out`` the bench also fits the rule (threshold and margin with the best
DIR at ``target_fpir``) and writes it as a calibration file. That rule is fitted and
measured on the same probes, so its figures are in-sample; the DIR-at-FPIR figures are
threshold sweeps and carry no such bias.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from indexer.calibration import (
    Calibration,
    CalibrationSource,
    GallerySizeRule,
    IdentificationCalibration,
    Thresholds,
    write_calibration,
)
from indexer.search import TemplateIndex
from trainer.embedding_cache import EmbeddedImages, embed_dataset
from trainer.lfw import PairsBenchResult
from trainer.openset import (
    OpenSetScores,
    OperatingPoint,
    dir_at_fpir,
    dir_fpir_curve,
    fit_operating_point,
    operating_point,
    pool,
    rank1,
)
from trainer.report import JsonValue, markdown_table, plot_roc, write_json
from trainer.thresholds import round_up_threshold
from vigil.config import Settings
from vigil.errors import CalibrationError, DatasetError
from vigil.machine import cpu_model
from vigil.models.pipeline import FacePipeline
from vigil.typing import Embeddings

logger = logging.getLogger(__name__)

FPIR_TARGETS = (1e-2, 1e-3)
# Gallery sizes the decision rule is also fitted for (smaller galleries allow lower thresholds),
# each from several random galleries of that size, pooled.
GALLERY_SIZES = (1, 3, 10, 30, 100, 300, 1000)
DRAWS_PER_SIZE = 20
# The operating points the shipped calibration holds: balanced (the service's default) and strict.
CALIBRATION_TARGETS = (1e-2, 1e-3)
PROTOCOL = (
    "open-set: gallery = first image of each person with >= 2 images; known probes = their other "
    "images; unknown probes = every image of single-image people; exact cosine search"
)
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


@dataclass(frozen=True)
class OpenSetSplit:
    """Who is enrolled with which image, and which images probe the gallery.

    Attributes:
        gallery: ``(person, image)`` for each enrolled person.
        known: ``(person, image)`` probes of enrolled people.
        unknown: Probe images of people not enrolled.
    """

    gallery: list[tuple[str, Path]]
    known: list[tuple[str, Path]]
    unknown: list[Path]


def open_set_split(images_dir: Path) -> OpenSetSplit:
    """Split a folder-per-person dataset by the protocol above.

    Raises:
        DatasetError: The folder is missing, or it has no person with two images or none with one.
    """
    if not images_dir.is_dir():
        raise DatasetError(f"{images_dir} is not a folder; pass --data pointing at the LFW folder")
    split = OpenSetSplit([], [], [])
    for folder in sorted(path for path in images_dir.iterdir() if path.is_dir()):
        images = sorted(path for path in folder.iterdir() if path.suffix.lower() in _IMAGE_SUFFIXES)
        if len(images) == 1:
            split.unknown.append(images[0])
        elif len(images) >= 2:
            split.gallery.append((folder.name, images[0]))
            split.known.extend((folder.name, image) for image in images[1:])
    if not split.gallery or not split.unknown:
        raise DatasetError(
            f"{images_dir} needs people with two or more images and people with one image "
            f"(found {len(split.gallery)} and {len(split.unknown)})"
        )
    return split


def score_open_set(
    gallery_people: list[str],
    gallery_embeddings: Embeddings,
    known_people: list[str],
    known_embeddings: Embeddings,
    unknown_embeddings: Embeddings,
) -> OpenSetScores:
    """Search every probe in an exact index of the gallery: best score, lead and correctness."""
    index = TemplateIndex(dim=gallery_embeddings.shape[1], kind="flat")
    index.build(np.arange(len(gallery_people), dtype=np.int64), gallery_people, gallery_embeddings)

    def top_and_lead(embeddings: Embeddings) -> tuple[np.ndarray, np.ndarray, list[str]]:
        results = index.search(embeddings, k=2)
        top = np.array([matches[0].score for matches in results])
        lead = np.array([m[0].score - m[1].score if len(m) > 1 else np.inf for m in results])
        return top, lead, [matches[0].identity_id for matches in results]

    known_top, known_lead, best = top_and_lead(known_embeddings)
    unknown_top, unknown_lead, _ = top_and_lead(unknown_embeddings)
    correct = np.array([guess == truth for guess, truth in zip(best, known_people, strict=True)])
    return OpenSetScores(known_top, known_lead, correct, unknown_top, unknown_lead)


@dataclass(frozen=True)
class EmbeddedSplit:
    """The embeddings of an ``OpenSetSplit``, row for row."""

    gallery_people: list[str]
    gallery: Embeddings
    known_people: list[str]
    known: Embeddings
    unknown: Embeddings

    def scores(self) -> OpenSetScores:
        return score_open_set(self.gallery_people, self.gallery, self.known_people, self.known, self.unknown)

    def scores_for(self, enrolled: set[str]) -> OpenSetScores:
        """Scores with only ``enrolled`` in the gallery; the others' probes become unknown probes."""
        in_gallery = [person in enrolled for person in self.gallery_people]
        is_known = np.array([person in enrolled for person in self.known_people])
        return score_open_set(
            [person for person, keep in zip(self.gallery_people, in_gallery, strict=True) if keep],
            self.gallery[np.array(in_gallery)],
            [person for person, keep in zip(self.known_people, is_known, strict=True) if keep],
            self.known[is_known],
            np.concatenate([self.unknown, self.known[~is_known]]),
        )


def embed_split(embedded: EmbeddedImages, split: OpenSetSplit) -> EmbeddedSplit:
    """The rows of ``embedded`` (which holds every image of ``split``) arranged as the split."""
    row = embedded.row()

    def rows(images: list[Path]) -> Embeddings:
        return embedded.embeddings[[row[image.resolve()] for image in images]]

    return EmbeddedSplit(
        [person for person, _ in split.gallery],
        rows([image for _, image in split.gallery]),
        [person for person, _ in split.known],
        rows([image for _, image in split.known]),
        rows(split.unknown),
    )


def fit_by_gallery_size(
    embedded: EmbeddedSplit, target_fpir: float, sizes: tuple[int, ...] = GALLERY_SIZES, seed: int = 0
) -> list[tuple[int, OperatingPoint]]:
    """The best rule at ``target_fpir`` for each gallery size, the full gallery last.

    Sizes below the full one pool seeded random galleries. Thresholds and margins never
    fall as the gallery grows (a bigger gallery is never judged more leniently than a
    smaller one; draws of different people can otherwise make the fitted values wobble).
    """
    rng = np.random.default_rng(seed)
    people = embedded.gallery_people
    fitted: list[tuple[int, OperatingPoint]] = []
    threshold, margin = -math.inf, 0.0
    for size in [*(size for size in sizes if size < len(people)), len(people)]:
        if size == len(people):
            scores = embedded.scores()
        else:
            draws = [
                set(rng.choice(people, size=size, replace=False).tolist()) for _ in range(DRAWS_PER_SIZE)
            ]
            scores = pool([embedded.scores_for(draw) for draw in draws])
        best = fit_operating_point(scores, target_fpir)
        threshold, margin = max(threshold, best.threshold), max(margin, best.margin)
        fitted.append((size, operating_point(scores, threshold, margin)))
    return fitted


def run_identify_bench(
    settings: Settings,
    data_dir: Path,
    json_path: Path,
    *,
    use_cache: bool = True,
    calibration_out: Path | None = None,
    target_fpirs: tuple[float, ...] = CALIBRATION_TARGETS,
) -> PairsBenchResult:
    """Run the open-set protocol on ``data_dir`` (the LFW folder) and write the reports.

    Raises:
        DatasetError: The images are missing or unreadable.
    """
    images_dir = data_dir / "lfw-deepfunneled"
    root = images_dir if images_dir.is_dir() else data_dir
    split = open_set_split(root)
    pipeline = FacePipeline.from_settings(settings)
    started = time.monotonic()
    pipeline.load()
    paths = [image for _, image in split.gallery] + [image for _, image in split.known] + split.unknown
    embedded = embed_dataset(settings, pipeline, paths, root, use_cache=use_cache)
    embedded_split = embed_split(embedded, split)
    scores = embedded_split.scores()
    sweeps = {target: dir_at_fpir(scores, target) for target in FPIR_TARGETS}
    try:
        rule: Thresholds | None = CalibrationSource(
            settings.indexer, settings.home, pipeline.embedder.version
        ).current(len(split.gallery))
    except CalibrationError as exc:  # e.g. an embedder not calibrated yet: fit one with calibration_out
        logger.warning("no decision rule in force to measure: %s", exc)
        rule = None
    figures: dict[str, JsonValue] = {
        "benchmark": "LFW open-set identification",
        "protocol": PROTOCOL,
        "gallery_identities": len(split.gallery),
        "known_probes": len(split.known),
        "unknown_probes": len(split.unknown),
        "no_face_count": int((~embedded.detected).sum()),
        "rank1": rank1(scores),
        **{f"dir_at_fpir_{_tag(t)}": point.dir for t, point in sweeps.items()},
        **{f"threshold_at_fpir_{_tag(t)}": point.threshold for t, point in sweeps.items()},
        "embedder": pipeline.embedder.version,
        "seconds": round(time.monotonic() - started, 1),
        "machine": cpu_model(),
        "torch_threads": torch.get_num_threads(),
    }
    if rule is not None:
        in_force = operating_point(scores, rule.threshold, rule.margin)
        figures["rule_in_force"] = {"source": rule.source, **_point_dict(in_force)}
        summary_rule = (
            f"\n  rule in force ({rule.source}): threshold {rule.threshold:.3f}, margin {rule.margin:.3f}: "
            f"DIR {in_force.dir:.2%}, FPIR {in_force.fpir:.2%}, "
            f"misidentified {in_force.misidentification_rate:.2%}"
        )
    else:
        summary_rule = "\n  no decision rule in force (no calibration for this embedder)"
    if calibration_out is not None:
        rule_sets = {target: fit_by_gallery_size(embedded_split, target) for target in target_fpirs}
        figures["fitted_rules"] = {
            _tag(target): {str(size): _point_dict(point) for size, point in fitted}
            for target, fitted in rule_sets.items()
        }
        write_calibration(calibration_out, _calibration(rule_sets, split, pipeline, figures))
    write_json(json_path, figures)
    fpir, dir_ = dir_fpir_curve(scores)
    plot_roc(
        fpir,
        dir_,
        json_path.with_suffix(".png"),
        label=f"Vigil {pipeline.embedder.version}",
        title=f"LFW open-set identification ({len(split.gallery)} enrolled)",
        far_min=1.0 / len(split.unknown),
        axis_labels=("False-positive identification rate (FPIR)", "Detection and identification rate (DIR)"),
    )
    json_path.with_suffix(".md").write_text(_markdown(figures), encoding="utf-8")
    summary = (
        f"LFW open-set: rank-1 {rank1(scores):.2%}, "
        + ", ".join(
            f"DIR {p.dir:.2%} at FPIR {_tag(t)} (threshold {p.threshold:.3f})" for t, p in sweeps.items()
        )
        + summary_rule
        + (f"\n  calibration written to {calibration_out}" if calibration_out is not None else "")
        + f"\nreports: {json_path}, {json_path.with_suffix('.md')}, {json_path.with_suffix('.png')}"
    )
    return PairsBenchResult(summary, figures)


def identification_rules(
    rule_sets: Mapping[float, list[tuple[int, OperatingPoint]]], *, known_probes: int, unknown_probes: int
) -> list[IdentificationCalibration]:
    """Calibration rule sets from fitted rules, one per target FPIR.

    Args:
        rule_sets: For each target FPIR, ``(gallery size, rule)`` pairs as
            :func:`fit_by_gallery_size` returns them, the full gallery last.
        known_probes: Probes of enrolled people (or genuine pairs) behind the figures.
        unknown_probes: Probes of strangers (or impostor pairs) behind the figures.

    Returns:
        One ``IdentificationCalibration`` per target, thresholds rounded up.
    """
    identification = []
    for target, fitted in rule_sets.items():
        *by_size, (full_size, full) = fitted
        identification.append(
            IdentificationCalibration(
                threshold=round_up_threshold(full.threshold),
                margin=full.margin,
                target_fpir=target,
                fpir=full.fpir,
                dir=full.dir,
                misidentification_rate=full.misidentification_rate,
                gallery_identities=full_size,
                known_probes=known_probes,
                unknown_probes=unknown_probes,
                by_gallery_size=[
                    GallerySizeRule(
                        gallery_identities=size,
                        threshold=round_up_threshold(point.threshold),
                        margin=point.margin,
                        fpir=point.fpir,
                        dir=point.dir,
                    )
                    for size, point in by_size
                ],
            )
        )
    return identification


def _tag(fpir: float) -> str:
    return f"{fpir:.0e}".replace("e-0", "e-")


def _point_dict(point: OperatingPoint) -> dict[str, JsonValue]:
    return {
        "threshold": round(point.threshold, 4),
        "margin": point.margin,
        "fpir": point.fpir,
        "dir": point.dir,
        "misidentification_rate": point.misidentification_rate,
    }


def _calibration(
    rule_sets: dict[float, list[tuple[int, OperatingPoint]]],
    split: OpenSetSplit,
    pipeline: FacePipeline,
    figures: dict[str, JsonValue],
) -> Calibration:
    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    digest = hashlib.sha256(f"{pipeline.embedder.version}{rule_sets}{created_at}".encode()).hexdigest()[:8]
    identification = identification_rules(
        rule_sets, known_probes=len(split.known), unknown_probes=len(split.unknown)
    )
    return Calibration(
        calibration_id=f"lfw-open-set-{digest}",
        created_at=created_at,
        embedder_version=pipeline.embedder.version,
        identification=identification,
        data={
            "dataset": "LFW (lfw-deepfunneled)",
            "protocol": PROTOCOL
            + "; threshold fitted to the target FPIR and the smallest margin keeping misidentifications "
            + "<= 0.1 %, fitted and measured on the same probes; smaller galleries: "
            + f"{DRAWS_PER_SIZE} random draws of enrolled people per size, the others' probes as unknowns",
            "rank1": float(figures["rank1"]),  # type: ignore[arg-type]
            "no_face_count": int(figures["no_face_count"]),  # type: ignore[arg-type]
        },
    )


def _markdown(figures: dict[str, JsonValue]) -> str:
    rows = [
        ("Enrolled people (gallery)", str(figures["gallery_identities"])),
        ("Known probes", str(figures["known_probes"])),
        ("Unknown probes", str(figures["unknown_probes"])),
        ("Images without a detected face", str(figures["no_face_count"])),
        ("Rank-1 (known probes)", f"{figures['rank1']:.2%}"),
    ]
    for target in FPIR_TARGETS:
        tag = _tag(target)
        rows.append(
            (
                f"DIR @ FPIR={tag}",
                f"{figures[f'dir_at_fpir_{tag}']:.2%} (threshold {figures[f'threshold_at_fpir_{tag}']:.3f})",
            )
        )
    point = figures.get("rule_in_force")
    if isinstance(point, dict):
        rows.append(
            ("Rule in force: threshold / margin", f"{point['threshold']:.3f} / {point['margin']:.2f}")
        )
        rows.append(
            (
                "Rule in force: DIR / FPIR / misidentified",
                f"{point['dir']:.2%} / {point['fpir']:.2%} / {point['misidentification_rate']:.2%}",
            )
        )
    text = f"## {figures['benchmark']}\n\n{figures['protocol']}.\n\n" + markdown_table(rows)
    fitted = figures.get("fitted_rules")
    if isinstance(fitted, dict):
        for target, by_size in fitted.items():
            if not isinstance(by_size, dict):
                continue
            size_rows = [
                (
                    size,
                    f"{rule['threshold']:.3f} / {rule['margin']:.2f}: DIR {rule['dir']:.2%}, "
                    f"FPIR {rule['fpir']:.2%}, misidentified {rule['misidentification_rate']:.2%}",
                )
                for size, rule in by_size.items()
                if isinstance(rule, dict)
            ]
            text += f"\nFitted rules, target FPIR {target}:\n\n" + markdown_table(
                size_rows, header=("Enrolled people", "Threshold / margin")
            )
    return text
