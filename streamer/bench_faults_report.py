"""The fault benchmark's results: faults, passes against the baseline, the report (JSON, Markdown).

``streamer.bench_faults`` runs the service and injects the faults; this module holds what it
measured and how it is compared and written up.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streamer.bench_setup import markdown_grid


class FaultKind(enum.StrEnum):
    WORKER_KILL = "worker_kill"
    TRACKER_KILL = "tracker_kill"
    READER_KILL = "reader_kill"
    SUPERVISOR_KILL = "supervisor_kill"
    REDIS_KILL = "redis_kill"
    POISON_FRAMES = "poison_frames"
    POISON_RESULTS = "poison_results"
    POISON_EVENTS = "poison_events"
    REDIS_FULL = "redis_full"
    CAMERA_KILL = "camera_kill"


@dataclass(frozen=True)
class Fault:
    """One injected fault.

    Attributes:
        kind: What was done.
        pass_index: The faulted pass it happened in (from 1).
        at: Unix time of the injection (for ``redis_full``, of the lift).
        target: The process killed (name and pid) or the stream poisoned.
        recovery_ms: Fault → next entry written by the service (None: none came in the pass);
            for ``camera_kill``, the camera's server back → the camera's next frame result.
        restart_s: A killed child: kill → its successor started (None for other kinds).
    """

    kind: FaultKind
    pass_index: int
    at: float
    target: str
    recovery_ms: float | None
    restart_s: float | None


@dataclass(frozen=True)
class PassOutcome:
    """What one pass delivered, against the baseline."""

    index: int
    seconds: float
    visits: int
    missing_visits: list[str]
    replayed_visits: int
    unended_tracks: list[str]
    duplicate_event_ids: int
    events: int
    restarts: int
    stale_frames: int
    """Frames a worker dropped as stale (re-claimed after ``bus.stale_after_s``), from the logs."""


@dataclass(frozen=True)
class LiveCameraOutcome:
    """The live-camera pass: an RTSP camera beside a file camera, its server killed and restarted.

    A live camera's visits depend on when frames arrive, so they are not compared with a
    baseline; what must hold is that each of its announcements is ended and delivered once,
    and that the file camera beside it delivers its baseline visits.

    Attributes:
        camera: The live camera's name.
        other_camera: The file camera's name.
        down_s: Server killed → started again.
        frames_before: The live camera's frame results before the kill.
        frames_after: Its frame results after the server came back.
        recovery_ms: Server back → the live camera's next frame result.
        announcements: The live camera's ``recognized``/``unknown`` events.
        other_baseline_visits: The file camera's visits in the baseline pass.
        missing_other_visits: Of those, the ones this pass did not announce.
        replayed_other_visits: The file camera's visits beyond the baseline's.
        unended_tracks: Announced tracks (either camera) without a ``track_ended``.
        duplicate_event_ids: Event ids delivered more than once.
        events: Events delivered.
    """

    camera: str
    other_camera: str
    down_s: float
    frames_before: int
    frames_after: int
    recovery_ms: float | None
    announcements: int
    other_baseline_visits: int
    missing_other_visits: list[str]
    replayed_other_visits: int
    unended_tracks: list[str]
    duplicate_event_ids: int
    events: int

    @property
    def events_expected(self) -> int:
        """Two per visit (announcement, ``track_ended``): the file camera's and the live camera's."""
        return 2 * (self.other_baseline_visits + self.replayed_other_visits + self.announcements)

    @property
    def events_lost(self) -> int:
        return 2 * len(self.missing_other_visits) + len(self.unended_tracks)


@dataclass(frozen=True)
class FaultBenchResult:
    """Everything ``vigil bench faults`` measured."""

    clips: list[str]
    seed: int
    profile: str
    workers: int
    reorder_window_ms: int
    baseline_visits: list[str]
    baseline_seconds: float
    passes: list[PassOutcome]
    faults: list[Fault]
    gallery_writes: int
    gallery_writes_lost: list[str]
    cpu_model: str
    cpu_count: int
    live_camera: LiveCameraOutcome | None = None
    live_camera_skipped: str = ""
    """Why the live-camera pass did not run (the RTSP server is missing), when it was asked for."""

    @property
    def events_expected(self) -> int:
        live = self.live_camera.events_expected if self.live_camera else 0
        return live + sum(
            2 * (len(self.baseline_visits) + outcome.replayed_visits) for outcome in self.passes
        )

    @property
    def events_lost(self) -> int:
        live = self.live_camera.events_lost if self.live_camera else 0
        return live + sum(2 * len(p.missing_visits) + len(p.unended_tracks) for p in self.passes)

    @property
    def duplicate_events(self) -> int:
        live = self.live_camera.duplicate_event_ids if self.live_camera else 0
        return live + sum(outcome.duplicate_event_ids for outcome in self.passes)

    @property
    def restarts(self) -> int:
        return sum(outcome.restarts for outcome in self.passes)

    def faults_by_kind(self) -> dict[str, int]:
        return dict(sorted(Counter(fault.kind.value for fault in self.faults).items()))

    def recovery(self, kinds: Sequence[FaultKind] | None = None) -> dict[str, float | int | None]:
        """Count, p50 and p99 of the time to recover (ms), over ``kinds`` (None: every fault)."""
        values = [
            fault.recovery_ms
            for fault in self.faults
            if fault.recovery_ms is not None and (kinds is None or fault.kind in kinds)
        ]
        if not values:
            return {"count": 0, "p50_ms": None, "p99_ms": None}
        p50, p99 = np.percentile(np.asarray(values, dtype=np.float64), [50, 99])
        return {"count": len(values), "p50_ms": round(float(p50), 1), "p99_ms": round(float(p99), 1)}

    def to_dict(self) -> dict[str, object]:
        derived = {
            "faults_by_kind": self.faults_by_kind(),
            "processes_restarted": self.restarts,
            "events_expected": self.events_expected,
            "events_delivered": self.events_expected - self.events_lost,
            "events_lost": self.events_lost,
            "duplicate_events": self.duplicate_events,
            "recovery": self.recovery(),
            "recovery_by_kind": {kind.value: self.recovery([kind]) for kind in FaultKind},
        }
        return {**dataclasses.asdict(self), **derived}

    def to_markdown(self) -> str:
        recovery = self.recovery()
        rows: list[tuple[str, ...]] = [
            (
                kind.value,
                str(self.faults_by_kind().get(kind.value, 0)),
                _ms(self.recovery([kind])["p50_ms"]),
                _ms(self.recovery([kind])["p99_ms"]),
                _seconds([f.restart_s for f in self.faults if f.kind is kind and f.restart_s is not None]),
            )
            for kind in FaultKind
            if kind.value in self.faults_by_kind()
        ]
        rows.append(("**all**", str(len(self.faults)), _ms(recovery["p50_ms"]), _ms(recovery["p99_ms"]), ""))
        lost = f" ({'; '.join(self.gallery_writes_lost)})" if self.gallery_writes_lost else ""
        return (
            "\n".join(
                [
                    "## Faults: the service under kills, Redis outages and poison entries",
                    "",
                    f"- cameras {', '.join(self.clips)}, read as fast as {self.workers} worker(s) go; "
                    f"profile `{self.profile}`, seed {self.seed}, "
                    f"tracker reorder window {self.reorder_window_ms} ms",
                    f"- CPU {self.cpu_model}, {self.cpu_count} logical CPUs",
                    f"- baseline (no fault): {len(self.baseline_visits)} visits "
                    f"in {self.baseline_seconds:.0f} s: " + ", ".join(self.baseline_visits),
                    "",
                    f"**Events expected {self.events_expected}, "
                    f"delivered {self.events_expected - self.events_lost}, "
                    f"lost {self.events_lost} (target 0); "
                    f"duplicate event ids {self.duplicate_events} (target 0); "
                    f"gallery writes lost {len(self.gallery_writes_lost)} of {self.gallery_writes} "
                    f"(target 0)**{lost}; "
                    f"processes restarted {self.restarts}.",
                    "",
                    markdown_grid(
                        ("fault", "injected", "recover p50 ms", "recover p99 ms", "restart s"), rows
                    ),
                    *self._pass_lines(),
                    *self._live_camera_lines(),
                ]
            )
            + "\n"
        )

    def _pass_lines(self) -> list[str]:
        if not self.passes:  # the live profile has no faulted file passes
            return []
        header = (
            "pass",
            "s",
            "visits",
            "replayed",
            "missing",
            "unended",
            "dup ids",
            "restarts",
            "stale frames",
        )
        rows = [
            (
                str(p.index),
                f"{p.seconds:.0f}",
                str(p.visits),
                str(p.replayed_visits),
                str(len(p.missing_visits)),
                str(len(p.unended_tracks)),
                str(p.duplicate_event_ids),
                str(p.restarts),
                str(p.stale_frames),
            )
            for p in self.passes
        ]
        return ["", markdown_grid(header, rows)]

    def _live_camera_lines(self) -> list[str]:
        live = self.live_camera
        if live is None:
            return (
                ["", f"Live camera: not run ({self.live_camera_skipped})."]
                if self.live_camera_skipped
                else []
            )
        missing = ", ".join(live.missing_other_visits) or "none"
        return [
            "",
            f"**Live camera** `{live.camera}` (RTSP, beside file camera `{live.other_camera}`): "
            f"server killed after {live.frames_before} frame results, down {live.down_s:.1f} s; "
            f"frames flowed again {_ms(live.recovery_ms)} ms after it came back "
            f"({live.frames_after} results after). "
            f"Events {live.events}, duplicate ids {live.duplicate_event_ids}, unended tracks "
            f"{len(live.unended_tracks)}, its announcements {live.announcements}; "
            f"`{live.other_camera}` baseline visits missing: {missing}.",
        ]


@dataclass(frozen=True)
class Visit:
    camera: str
    type: str
    name: str | None
    track_id: str


@dataclass
class PassRun:
    index: int
    seconds: float
    seconds_to_done: float
    visits: list[Visit]
    ended: set[str]
    event_ids: Counter[str]
    restarts: int
    stale_frames: int = 0
    faults: list[Fault] = dataclasses.field(default_factory=list)
    not_injected: list[FaultKind] = dataclasses.field(default_factory=list)
    enrolled: list[str] = dataclasses.field(default_factory=list)

    def compare(self, baseline: Sequence[str]) -> PassOutcome:
        delivered = Counter(visit_label(visit) for visit in self.visits)
        expected = Counter(baseline)
        return PassOutcome(
            index=self.index,
            seconds=round(self.seconds, 1),
            visits=len(self.visits),
            missing_visits=sorted((expected - delivered).elements()),
            replayed_visits=sum((delivered - expected).values()),
            unended_tracks=sorted(v.track_id for v in self.visits if v.track_id not in self.ended),
            duplicate_event_ids=sum(count - 1 for count in self.event_ids.values()),
            events=sum(self.event_ids.values()),
            restarts=self.restarts,
            stale_frames=self.stale_frames,
        )


def visit_label(visit: Visit) -> str:
    return f"{visit.camera}:{visit.name if visit.type == 'recognized' else 'unknown'}"


def _ms(value: float | int | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def _seconds(values: Sequence[float]) -> str:
    return "" if not values else f"{float(np.median(values)):.1f} (median)"
