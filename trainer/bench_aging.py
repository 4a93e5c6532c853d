"""``vigil bench pairs --template-aging``: the template-aging walk on real photos, static gallery beside it.

Embeds the probe list's photos (cached, as every bench; a photo without a detected face
is embedded whole, as ``vigil bench pairs`` does), takes the decision rule the service
would use for a gallery of that many people (the calibration in force, or
``indexer.match_threshold`` / ``match_margin``, which ``--threshold`` / ``--margin`` set),
walks the probes twice (``trainer.aging_simulation``: static gallery, then aging with
``indexer.aging``'s rules) and writes JSON and Markdown.

Searches run in the backbone's embedding space: a promoted head is not applied, and no
hard negatives take part.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from indexer.calibration import CalibrationSource, Thresholds
from trainer.aging_simulation import AgingScenario, ModeSummary, SimulationRun, simulate
from trainer.embedding_cache import EmbeddedImages, embed_dataset
from trainer.lfw import PairsBenchResult
from trainer.probe_list import ListedPhoto, ProbeList
from trainer.report import JsonValue, markdown_table, write_json
from vigil.config import Settings
from vigil.machine import cpu_model
from vigil.models.pipeline import FacePipeline
from vigil.typing import Embeddings

logger = logging.getLogger(__name__)

PROTOCOL = (
    "each person enrolled with their first photo; probes walked in list order, each decided by the "
    "service's rule (best template per person, threshold and margin for the gallery's size); aging mode "
    "adds a named probe as a template of the named person when indexer.aging's score, margin and "
    "near-duplicate rules pass (track length and face size taken as satisfied: a photo has no track)"
)

_TRACK_RULES = {"min_track_frames", "min_face_px"}
"""Aging rules about tracks and face boxes, which a photo in a probe list does not have."""


def run_aging_bench(
    settings: Settings,
    probe_list: ProbeList,
    images_dir: Path,
    json_path: Path,
    name: str,
    *,
    use_cache: bool = True,
) -> PairsBenchResult:
    """Walk ``probe_list`` with and without template aging and write ``json_path`` and Markdown beside it.

    Args:
        settings: Models, cache location, the decision rule (``indexer``) and the aging rules
            (``indexer.aging``; ``enabled`` is ignored, the walk ages everyone).
        probe_list: Enrolment photos and chronological probes.
        images_dir: The dataset folder (part of the embedding cache key).
        json_path: Results JSON; the Markdown summary is written beside it.
        name: The benchmark's name in the reports.
        use_cache: Whether to read and write the embedding cache.

    Raises:
        DatasetError: Photos cannot be read.
        CalibrationError: No rule in force for this embedder and no ``--threshold``/``--margin``.
    """
    pipeline = FacePipeline.from_settings(settings)
    started = time.monotonic()
    pipeline.load()
    rule = CalibrationSource(settings.indexer, settings.home, pipeline.embedder.version).current(
        len(probe_list.enrolment)
    )
    photos = [*probe_list.enrolment, *probe_list.probes]
    embedded = embed_dataset(
        settings,
        pipeline,
        [photo.path for photo in photos],
        images_dir,
        use_cache=use_cache,
        fallback="whole_image",
    )
    scenario = AgingScenario(
        people=probe_list.people,
        enrolment=_rows(embedded, probe_list.enrolment),
        probe_people=[photo.person for photo in probe_list.probes],
        probes=_rows(embedded, probe_list.probes),
    )
    top_k = settings.indexer.top_k
    static_run = simulate(scenario, rule.threshold, rule.margin, None, top_k=top_k)
    aging_run = simulate(scenario, rule.threshold, rule.margin, settings.indexer.aging, top_k=top_k)
    static, aging = static_run.summary(), aging_run.summary()
    figures: dict[str, JsonValue] = {
        "benchmark": name,
        "protocol": PROTOCOL,
        "people": len(probe_list.enrolment),
        "probes": len(probe_list.probes),
        "images": len(photos),
        "no_face_count": int((~embedded.detected).sum()),
        "no_face_fallback": "whole_image",
        "rule": {"threshold": rule.threshold, "margin": rule.margin, "source": rule.source},
        "aging_rules": settings.indexer.aging.model_dump(mode="json", exclude={"enabled", *_TRACK_RULES}),
        "aging_rules_taken_as_satisfied": sorted(_TRACK_RULES),
        "static": static.to_dict(),
        "aging": aging.to_dict(),
        "per_person": _per_person(scenario.people, static_run, aging_run),
        "embedder": pipeline.embedder.version,
        "seconds": round(time.monotonic() - started, 1),
        "machine": cpu_model(),
        "torch_threads": torch.get_num_threads(),
    }
    write_json(json_path, figures)
    json_path.with_suffix(".md").write_text(_markdown(name, rule, static, aging, figures), encoding="utf-8")
    summary = (
        f"{name}: {figures['people']} people, {figures['probes']} probes; rule {rule.threshold:.3f} / "
        f"margin {rule.margin:.2f} ({rule.source})\n"
        f"  static: {_summary_line(static)}\n"
        f"  aging:  {_summary_line(aging)}\n"
        f"reports: {json_path}, {json_path.with_suffix('.md')}"
    )
    return PairsBenchResult(summary, figures)


def _rows(embedded: EmbeddedImages, photos: list[ListedPhoto]) -> Embeddings:
    row = embedded.row()
    return np.ascontiguousarray(embedded.embeddings[[row[photo.path.resolve()] for photo in photos]])


def _per_person(people: list[str], static: SimulationRun, aging: SimulationRun) -> dict[str, JsonValue]:
    """Probes, recognitions in each mode (all and late) and templates added, per person."""
    figures: dict[str, JsonValue] = {}
    for person in people:
        mine = [
            (before, after)
            for before, after in zip(static.results, aging.results, strict=True)
            if before.person == person
        ]
        figures[person] = {
            "probes": len(mine),
            "recognised_static": sum(before.outcome == "recognised" for before, _ in mine),
            "recognised_aging": sum(after.outcome == "recognised" for _, after in mine),
            "late_recognised_static": sum(
                before.late and before.outcome == "recognised" for before, _ in mine
            ),
            "late_recognised_aging": sum(after.late and after.outcome == "recognised" for _, after in mine),
            "templates_added": sum(after.added for _, after in mine),
        }
    return figures


def _summary_line(summary: ModeSummary) -> str:
    return (
        f"recognised {summary.recognised_rate:.2%}, wrong {summary.wrong_rate:.2%}, "
        f"unknown {summary.unknown_rate:.2%}; last third recognised {summary.late_recognised_rate:.2%}; "
        f"{summary.templates_added} templates added ({summary.templates_added_to_wrong_person} to the wrong "
        f"person), {summary.templates_dropped} dropped"
    )


def _added(summary: ModeSummary) -> str:
    return f"{summary.templates_added} ({summary.templates_added_to_wrong_person})"


def _markdown(
    name: str, rule: Thresholds, static: ModeSummary, aging: ModeSummary, figures: dict[str, JsonValue]
) -> str:
    rows = [
        ("Probes", str(static.probes), str(aging.probes)),
        ("Recognised", f"{static.recognised_rate:.2%}", f"{aging.recognised_rate:.2%}"),
        ("Wrong identity", f"{static.wrong_rate:.2%}", f"{aging.wrong_rate:.2%}"),
        ("Unknown", f"{static.unknown_rate:.2%}", f"{aging.unknown_rate:.2%}"),
        (
            f"Recognised, last third of each person's probes ({static.late_probes})",
            f"{static.late_recognised_rate:.2%}",
            f"{aging.late_recognised_rate:.2%}",
        ),
        ("Templates added (to the wrong person)", _added(static), _added(aging)),
        (
            "Aging templates dropped (over max_templates)",
            str(static.templates_dropped),
            str(aging.templates_dropped),
        ),
    ]
    return (
        f"## {name}\n\n{PROTOCOL}.\n\n"
        f"{figures['people']} people, rule {rule.threshold:.3f} / margin {rule.margin:.2f} ({rule.source}); "
        f"images without a detected face: {figures['no_face_count']} of {figures['images']}, "
        "embedded whole.\n\n" + markdown_table(rows, header=("Figure", "Static gallery", "Template aging"))
    )
