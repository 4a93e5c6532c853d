"""The template-aging walk (`vigil bench pairs --template-aging`): its rules on exact geometric
embeddings, then on real LFW photos of Fidel Castro, as a function and through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from indexer.calibration import CalibrationSource
from tests.conftest import LFW, dlib_settings, require
from trainer.aging_simulation import AgingScenario, Outcome, late_probes, simulate
from trainer.embedding_cache import embed_dataset
from trainer.probe_list import read_probe_list
from vigil.cli import main
from vigil.config import Settings
from vigil.config.aging import AgingConfig
from vigil.models.pipeline import FacePipeline
from vigil.typing import Embedding

# The rules of these tests: name at cosine >= 0.90 (about 25.8 degrees), learn at >= 0.92
# (about 23.1 degrees) with a lead of 0.05, skip near-duplicates above 0.97 (about 14.1 degrees).
THRESHOLD = 0.90
RULES = AgingConfig(extra_score=0.02, min_margin=0.05, max_similarity=0.97, max_templates=10)
TOP_K = 5

# The walk of the real photos, oldest first by eye (see tests/streamer/test_learning.py):
# Fidel_Castro_0008 (full dark beard, the youngest) enrols him and 0006 (white beard, thin
# aged face) is last; 0002 and 0009 (grey beard) come between. Two other heads of state of
# the time (one probe or two each) make the gallery three people, so the calibrated rule
# for three people is in force.
FIDEL_WALK = """\
# name  photo (relative to lfw-deepfunneled), oldest first
Fidel_Castro Fidel_Castro/Fidel_Castro_0008.jpg
Hugo_Chavez Hugo_Chavez/Hugo_Chavez_0001.jpg
Jiang_Zemin Jiang_Zemin/Jiang_Zemin_0001.jpg
Fidel_Castro Fidel_Castro/Fidel_Castro_0002.jpg
Hugo_Chavez Hugo_Chavez/Hugo_Chavez_0002.jpg
Fidel_Castro Fidel_Castro/Fidel_Castro_0009.jpg
Jiang_Zemin Jiang_Zemin/Jiang_Zemin_0002.jpg
Hugo_Chavez Hugo_Chavez/Hugo_Chavez_0003.jpg
Fidel_Castro Fidel_Castro/Fidel_Castro_0006.jpg
"""
OLD_FACE = "Fidel_Castro_0006.jpg"


def at_angle(degrees: float) -> Embedding:
    """A unit vector in the x-y plane: two of them are at cosine ``cos(difference)``."""
    radians = math.radians(degrees)
    return np.array([math.cos(radians), math.sin(radians), 0.0], dtype=np.float32)


POLE = np.array([0.0, 0.0, 1.0], dtype=np.float32)
"""At cosine 0 to every :func:`at_angle` vector: a person nobody resembles."""


def make_scenario(people: dict[str, Embedding], probes: list[tuple[str, Embedding]]) -> AgingScenario:
    return AgingScenario(
        people=list(people),
        enrolment=np.stack(list(people.values())),
        probe_people=[person for person, _ in probes],
        probes=np.stack([vector for _, vector in probes]),
    )


@pytest.mark.parametrize(
    ("people", "probes", "static", "aging", "added"),
    [
        # a face drifting 20 degrees per visit (cosine 0.94 per step): the static gallery
        # loses it at the second step, aging follows it to 80 degrees
        (
            {"ann": at_angle(0)},
            [("ann", at_angle(20)), ("ann", at_angle(40)), ("ann", at_angle(60)), ("ann", at_angle(80))],
            ["recognised", "unknown", "unknown", "unknown"],
            ["recognised"] * 4,
            [True] * 4,
        ),
        # a near-duplicate of the enrolment photo (cosine 0.985): recognised, not learnt
        ({"ann": at_angle(0)}, [("ann", at_angle(10))], ["recognised"], ["recognised"], [False]),
        # recognised (margin rule 0) but only 0.024 ahead of a look-alike: not learnt
        (
            {"ann": at_angle(0), "cat": at_angle(40)},
            [("ann", at_angle(18))],
            ["recognised"],
            ["recognised"],
            [False],
        ),
        # bob looks like ann's photo (cosine 0.966): named ann, and aging teaches ann his face,
        # as the service would (it cannot know): counted as added to the wrong person
        ({"ann": at_angle(0), "bob": POLE}, [("bob", at_angle(15))], ["wrong"], ["wrong"], [True]),
        # a face between thresholds (cosine 0.906: named, not confident enough to learn)
        ({"ann": at_angle(0)}, [("ann", at_angle(25))], ["recognised"], ["recognised"], [False]),
    ],
    ids=["drifting-face", "near-duplicate", "close-runner-up", "look-alike", "below-extra-score"],
)
def test_the_walk_applies_the_service_rule_and_the_aging_rules(
    people: dict[str, Embedding],
    probes: list[tuple[str, Embedding]],
    static: list[Outcome],
    aging: list[Outcome],
    added: list[bool],
) -> None:
    # given enrolment and probe embeddings with known cosines
    scenario = make_scenario(people, probes)
    # when walked with the static gallery and with aging
    static_run = simulate(scenario, THRESHOLD, 0.0, None, top_k=TOP_K)
    aging_run = simulate(scenario, THRESHOLD, 0.0, RULES, top_k=TOP_K)
    # then each probe's outcome and each addition are as the geometry says
    assert [r.outcome for r in static_run.results] == static, [r.score for r in static_run.results]
    assert [r.outcome for r in aging_run.results] == aging, [r.score for r in aging_run.results]
    assert [r.added for r in aging_run.results] == added, [(r.score, r.margin) for r in aging_run.results]
    assert not any(r.added for r in static_run.results), "the static gallery never learns"
    # and the summary counts what the results hold
    summary = aging_run.summary()
    assert summary.templates_added == sum(added)
    wrong_added = sum(a and o == "wrong" for a, o in zip(added, aging, strict=True))
    assert summary.templates_added_to_wrong_person == wrong_added
    assert math.isclose(summary.recognised_rate + summary.wrong_rate + summary.unknown_rate, 1.0)


@pytest.mark.parametrize(
    ("max_templates", "expected", "dropped"),
    [
        # the +22 template made room for the -22 one: 44 degrees is out of reach
        (1, "unknown", 1),
        # both kept: 44 degrees is 22 from the +22 template, and learnt in turn (+22 goes)
        (2, "recognised", 1),
    ],
)
def test_the_oldest_aging_template_goes_beyond_max_templates(
    max_templates: int, expected: Outcome, dropped: int
) -> None:
    # given ann's face seen at +22 and at -22 degrees (both learnt: cosine 0.927 to the enrolment)
    scenario = make_scenario(
        {"ann": at_angle(0)}, [("ann", at_angle(22)), ("ann", at_angle(-22)), ("ann", at_angle(44))]
    )
    rules = RULES.model_copy(update={"max_templates": max_templates})
    # when walked with room for max_templates aging templates
    run = simulate(scenario, THRESHOLD, 0.0, rules, top_k=TOP_K)
    # then both were learnt, the oldest dropped when there was no room, and the search no longer finds it
    assert [r.added for r in run.results[:2]] == [True, True]
    assert run.results[2].outcome == expected, run.results[2].score
    assert run.templates_dropped == dropped


def test_the_last_third_of_each_persons_probes_is_marked() -> None:
    # 3 probes of ann (the last is late), 4 of bob (the last 2 are late: a third rounded up)
    people = ["ann", "bob", "ann", "bob", "bob", "ann", "bob"]
    assert late_probes(people) == [False, False, False, False, True, True, True]


@pytest.fixture
def fidel_walk(tmp_path: Path) -> tuple[Path, Path]:
    """The probe list of :data:`FIDEL_WALK` and the LFW folder it is relative to."""
    images = require(LFW / "lfw-deepfunneled")
    probes = tmp_path / "fidel.txt"
    probes.write_text(FIDEL_WALK, encoding="utf-8")
    return probes, images


def test_aging_recognises_the_late_photo_the_static_gallery_misses(
    settings: Settings, dlib_pipeline: FacePipeline, fidel_walk: tuple[Path, Path]
) -> None:
    # (dlib's family: the walk was picked on dlib's scores; SFace already scores every pair of
    # Fidel Castro's photos above its threshold, so it needs no aging here)
    settings, pipeline = dlib_settings(settings), dlib_pipeline
    # given the real photos of the walk, embedded, and the calibrated rule for a gallery of 3
    probes_file, images = fidel_walk
    walk = read_probe_list(probes_file, images)
    photos = [*walk.enrolment, *walk.probes]
    embedded = embed_dataset(
        settings, pipeline, [p.path for p in photos], images, use_cache=True, fallback="whole_image"
    )
    row = embedded.row()
    scenario = AgingScenario(
        people=walk.people,
        enrolment=embedded.embeddings[[row[p.path.resolve()] for p in walk.enrolment]],
        probe_people=[p.person for p in walk.probes],
        probes=embedded.embeddings[[row[p.path.resolve()] for p in walk.probes]],
    )
    rule = CalibrationSource(settings.indexer, settings.home, pipeline.embedder.version).current(3)
    # when walked with the static gallery and with the default aging rules
    static = simulate(scenario, rule.threshold, rule.margin, None, top_k=settings.indexer.top_k)
    aging = simulate(
        scenario, rule.threshold, rule.margin, settings.indexer.aging, top_k=settings.indexer.top_k
    )
    old_face = next(i for i, p in enumerate(walk.probes) if p.path.name == OLD_FACE)
    # then the static gallery leaves the old face unknown (the young photo alone is too far) ...
    before, after = static.results[old_face], aging.results[old_face]
    assert before.outcome == "unknown", f"static score {before.score:.3f}, threshold {rule.threshold:.3f}"
    # ... and aging, having learnt the grey-bearded photos on the way, recognises it
    fidel_added = [r for r in aging.results if r.person == "Fidel_Castro" and r.added]
    assert fidel_added, [(r.person, round(r.score, 3)) for r in aging.results]
    assert after.outcome == "recognised" and after.late, f"aging score {after.score:.3f}"
    assert after.score > before.score
    # and nobody was named as someone else, in either walk, nor taught to the wrong person
    assert not [r for r in static.results + aging.results if r.outcome == "wrong"]
    assert aging.summary().templates_added_to_wrong_person == 0


def test_the_command_writes_both_walks_side_by_side(
    home: Path, fidel_walk: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIGIL_DETECTOR__BACKEND", "mtcnn")  # dlib's family, as above
    monkeypatch.setenv("VIGIL_EMBEDDER__BACKEND", "dlib_resnet")
    # given the Fidel Castro walk
    probes_file, images = fidel_walk
    json_path = tmp_path / "out" / "aging.json"
    # when benchmarked through the CLI
    args = ["--template-aging", str(probes_file), "--images", str(images), "--json", str(json_path)]
    assert main(["bench", "pairs", *args]) == 0
    # then the JSON holds both modes, with the figures the issue asks for
    figures = json.loads(json_path.read_text())
    assert figures["people"] == 3 and figures["probes"] == 6 and figures["images"] == 9
    for mode in ("static", "aging"):
        summary = figures[mode]
        assert summary["probes"] == 6
        rates = summary["recognised_rate"] + summary["wrong_rate"] + summary["unknown_rate"]
        assert math.isclose(rates, 1.0), summary
        assert summary["late_probes"] == 3  # the last of each person's probes
    assert figures["static"]["templates_added"] == 0 < figures["aging"]["templates_added"]
    fidel = figures["per_person"]["Fidel_Castro"]
    assert (
        fidel["probes"] == 3 and fidel["late_recognised_static"] == 0 and fidel["late_recognised_aging"] == 1
    )
    assert figures["rule"]["source"].startswith("calibration"), figures["rule"]
    # and the Markdown has the side-by-side table
    markdown = json_path.with_suffix(".md").read_text()
    assert "| Figure | Static gallery | Template aging |" in markdown, markdown
    # when the threshold is given instead, then that rule is used, as indexer.match_threshold would be
    loose = tmp_path / "loose.json"
    assert (
        main(["bench", "pairs", *args[:4], "--json", str(loose), "--threshold", "0.5", "--margin", "0"]) == 0
    )
    rule = json.loads(loose.read_text())["rule"]
    assert (rule["threshold"], rule["margin"], rule["source"]) == (0.5, 0.0, "configuration")
