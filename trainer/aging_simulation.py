"""Template aging replayed over a chronological probe list, beside a gallery that never changes.

The live rules (``indexer.aging``) act on tracks from a stream, over months; this replays
them on photos in a second, so what they gain (and what they risk) can be measured
against the static gallery on the same embeddings.

The walk:

1. Everyone is enrolled with their first photo (one template each) before the walk, so
   the gallery's size, and the rule in force for it, stays the same throughout.
2. Each probe, in list order, is searched as the service searches (``TemplateIndex``:
   each person's best template, top ``top_k`` people) and decided by
   ``indexer.search.decide`` (threshold, then lead over the runner-up).
3. Its outcome is *recognised* (named as the right person), *wrong* (named as someone
   else) or *unknown*.
4. With aging on, a named probe whose score and lead pass
   ``indexer.aging.confidence_refusal`` (score ≥ threshold + ``extra_score``, lead ≥
   ``min_margin``) and that is no ``near_duplicate`` of the named person's templates
   becomes a template of the *named* person, right or wrong, as in the service, which
   does not know the truth (additions to the wrong person are counted). Beyond
   ``max_templates`` aging templates the oldest goes (``surplus_aging_templates``);
   enrolment templates stay.

Track-level rules: a probe is one photo, not a track, so ``min_track_frames`` and the
rule that every frame of the track named the person are taken as satisfied. Each probe
stands for a visit the tracker has already confirmed; those rules keep one stray frame
from teaching the gallery, which has no counterpart for a single photo. ``min_face_px``
is taken as satisfied too (the embedding cache keeps no face sizes; benchmark photos are
chosen with usable faces). The simulation therefore adds as many templates as the score
rules allow: the most the stream could add from the same faces.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from indexer.aging import confidence_refusal, near_duplicate, surplus_aging_templates
from indexer.search import TemplateIndex, decide
from vigil.config.aging import AgingConfig
from vigil.typing import Embedding, Embeddings

logger = logging.getLogger(__name__)

LATE_FRACTION = 1 / 3
"""The share of each person's probes, the last ones, reported apart: where aging should matter most."""

Outcome = Literal["recognised", "wrong", "unknown"]


@dataclass(frozen=True)
class AgingScenario:
    """The embeddings of a probe list, as the walk uses them.

    Attributes:
        people: Who each enrolment row is (distinct names).
        enrolment: ``(P, D)`` float32: each person's enrolment photo.
        probe_people: Who each probe truly is, in walk (chronological) order.
        probes: ``(Q, D)`` float32, row for row with ``probe_people``.

    Raises:
        ValueError: The shapes disagree, a name repeats, or a probe's person is not enrolled.
    """

    people: list[str]
    enrolment: Embeddings
    probe_people: list[str]
    probes: Embeddings

    def __post_init__(self) -> None:
        if self.enrolment.ndim != 2 or self.enrolment.shape[0] != len(self.people):
            raise ValueError(f"{len(self.people)} people but enrolment embeddings {self.enrolment.shape}")
        if self.probes.shape != (len(self.probe_people), self.enrolment.shape[1]):
            raise ValueError(
                f"{len(self.probe_people)} probes of dimension {self.enrolment.shape[1]} "
                f"but probe embeddings {self.probes.shape}"
            )
        if len(set(self.people)) != len(self.people):
            raise ValueError("a person is enrolled twice")
        strangers = set(self.probe_people) - set(self.people)
        if strangers:
            raise ValueError(f"probes of people not enrolled: {sorted(strangers)[:3]}")


@dataclass(frozen=True)
class ProbeResult:
    """What happened to one probe.

    Attributes:
        person: Who it truly is.
        named: Who the gallery said (None: unknown).
        score: Cosine similarity of the best person's best template.
        margin: Lead over the runner-up person (``inf`` with none).
        late: In the last third of the person's probes.
        added: Became a template (aging only).
    """

    person: str
    named: str | None
    score: float
    margin: float
    late: bool
    added: bool

    @property
    def outcome(self) -> Outcome:
        if self.named is None:
            return "unknown"
        return "recognised" if self.named == self.person else "wrong"


@dataclass(frozen=True)
class ModeSummary:
    """The figures of one walk; rates are fractions of the probes.

    Attributes:
        probes: Probes walked.
        recognised_rate: Named as the right person.
        wrong_rate: Named as someone else.
        unknown_rate: Left unknown.
        late_probes: Probes in the last third of their person's.
        late_recognised_rate: Recognised among those.
        templates_added: Probes that became templates.
        templates_added_to_wrong_person: Of those, probes of someone else.
        templates_dropped: Aging templates removed to stay within ``max_templates``.
    """

    probes: int
    recognised_rate: float
    wrong_rate: float
    unknown_rate: float
    late_probes: int
    late_recognised_rate: float
    templates_added: int
    templates_added_to_wrong_person: int
    templates_dropped: int

    def to_dict(self) -> dict[str, float | int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class SimulationRun:
    """One walk over a scenario: a result per probe, in walk order."""

    results: list[ProbeResult]
    templates_dropped: int

    def summary(self) -> ModeSummary:
        results = self.results
        late = [result for result in results if result.late]
        return ModeSummary(
            probes=len(results),
            recognised_rate=_share(results, "recognised"),
            wrong_rate=_share(results, "wrong"),
            unknown_rate=_share(results, "unknown"),
            late_probes=len(late),
            late_recognised_rate=_share(late, "recognised"),
            templates_added=sum(result.added for result in results),
            templates_added_to_wrong_person=sum(
                result.added and result.outcome == "wrong" for result in results
            ),
            templates_dropped=self.templates_dropped,
        )


def late_probes(probe_people: Sequence[str]) -> list[bool]:
    """Whether each probe is in the last third (:data:`LATE_FRACTION`, rounded up) of its person's.

    Example:
        >>> late_probes(["a", "b", "a", "a", "b"])
        [False, False, False, True, True]
    """
    totals: dict[str, int] = {}
    for person in probe_people:
        totals[person] = totals.get(person, 0) + 1
    seen: dict[str, int] = {}
    late = []
    for person in probe_people:
        seen[person] = seen.get(person, 0) + 1
        late.append(seen[person] > totals[person] - math.ceil(totals[person] * LATE_FRACTION))
    return late


def simulate(
    scenario: AgingScenario,
    threshold: float,
    margin: float,
    aging: AgingConfig | None,
    *,
    top_k: int,
) -> SimulationRun:
    """Walk the probes in order, deciding each with the service's rule; with ``aging``, learn as it goes.

    Args:
        scenario: Enrolment and probe embeddings.
        threshold: Minimum cosine similarity to name a person (the rule in force).
        margin: Minimum lead over the runner-up.
        aging: The aging rules (``enabled`` is ignored: the walk ages everyone); None for
            the static gallery.
        top_k: People each search returns (``indexer.top_k``; the margin needs two).

    Returns:
        The result of every probe and how many aging templates were dropped.
    """
    gallery = _SimulatedGallery(scenario)
    results = []
    for person, probe, late in zip(
        scenario.probe_people, scenario.probes, late_probes(scenario.probe_people), strict=True
    ):
        decision = decide(gallery.index.search(probe[None], k=top_k)[0], threshold, margin)
        added = False
        if aging is not None and decision.identity_id is not None:
            reason = confidence_refusal(decision.score, decision.margin, threshold, aging)
            added = reason is None and gallery.learn(decision.identity_id, probe, aging)
        results.append(
            ProbeResult(person, decision.identity_id, decision.score, decision.margin, late, added)
        )
    mode = "static" if aging is None else "aging"
    logger.info("%s walk: %d probes, %d templates added", mode, len(results), sum(r.added for r in results))
    return SimulationRun(results, gallery.dropped)


class _SimulatedGallery:
    """The templates of a walk: an exact index, and each person's templates with their origin."""

    def __init__(self, scenario: AgingScenario) -> None:
        count = len(scenario.people)
        self.index = TemplateIndex(dim=scenario.enrolment.shape[1], kind="flat", device="cpu")
        self.index.build(np.arange(count, dtype=np.int64), scenario.people, scenario.enrolment)
        # template id -> embedding, oldest first; enrolment templates have ids below `count`
        self._templates: dict[str, dict[int, Embedding]] = {
            person: {row: scenario.enrolment[row]} for row, person in enumerate(scenario.people)
        }
        self._aging: dict[str, list[int]] = {person: [] for person in scenario.people}
        self._next_id = count
        self.dropped = 0

    def learn(self, person: str, embedding: Embedding, config: AgingConfig) -> bool:
        """Add ``embedding`` as an aging template of ``person``, unless a near-duplicate; True if added."""
        templates = self._templates[person]
        if near_duplicate(embedding, list(templates.values()), config.max_similarity) is not None:
            return False
        aging = self._aging[person]
        surplus = surplus_aging_templates(len(aging), config.max_templates)
        if surplus:
            self.index.remove(np.array(aging[:surplus], dtype=np.int64))
            for template_id in aging[:surplus]:
                del templates[template_id]
            del aging[:surplus]
            self.dropped += surplus
        template_id = self._next_id
        self._next_id += 1
        self.index.add(np.array([template_id], dtype=np.int64), [person], embedding[None])
        templates[template_id] = embedding
        aging.append(template_id)
        return True


def _share(results: Sequence[ProbeResult], outcome: Outcome) -> float:
    """The fraction of ``results`` with this outcome (0 when there are none)."""
    if not results:
        return 0.0
    return sum(result.outcome == outcome for result in results) / len(results)
