"""Face tracks on one camera, on synthetic frames: association, voting and track events.

Each synthetic person is a random unit 128-d embedding; every sighting adds a little noise,
so two sightings of one person score about 0.99 and different people 0.85 (a look-alike)
or about 0 (a stranger), either side of the tracker's bar for an unknown embedder (0.93).
Frames are 5 per second of capture time and faces move a few pixels per frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from streamer.analysis import FaceResult, FrameResult
from streamer.events import Event, EventType, iso_time
from streamer.tracking import CameraTracker
from vigil.config.streamer import TrackerConfig
from vigil.typing import Embedding

EMBEDDING_DIM = 128
# Per-component noise of a sighting: about 0.11 in norm, so sightings of one person score ~0.99.
SIGHTING_NOISE = 0.01
FRAME_INTERVAL_S = 0.2
START_S = 1_795_341_600.0
FACE_SIZE_PX = 100.0
STEP_PX = 3.0
THRESHOLD = 0.92
MARGIN = 0.02
EMBEDDER = "test-embedder"


@dataclass(frozen=True)
class Person:
    """A synthetic person: who the gallery says they are (None: not enrolled) and their face."""

    identity_id: str | None
    name: str | None
    embedding: Embedding


class People:
    """Deterministic synthetic people and their noisy sightings."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng(seed)

    def person(self, identity_id: str | None, name: str | None = None) -> Person:
        return Person(identity_id, name, self._unit(self._rng.normal(size=EMBEDDING_DIM)))

    def look_alike(self, of: Person, identity_id: str | None, cosine: float = 0.85) -> Person:
        """Someone whose embedding scores ``cosine`` against ``of``'s."""
        other = self._rng.normal(size=EMBEDDING_DIM)
        other -= np.dot(other, of.embedding) * of.embedding  # orthogonal to `of`
        mixed = cosine * of.embedding + np.sqrt(1 - cosine**2) * self._unit(other)
        return Person(identity_id, identity_id, self._unit(mixed))

    def sighting(self, person: Person) -> Embedding:
        noisy = person.embedding + self._rng.normal(scale=SIGHTING_NOISE, size=EMBEDDING_DIM)
        return self._unit(noisy)

    def face(self, person: Person, x: float, y: float = 50.0, score: float = 0.97) -> FaceResult:
        """``person`` seen with the face box's top-left corner at (x, y); named if enrolled."""
        named = person.identity_id is not None
        return FaceResult(
            box=[x, y, x + FACE_SIZE_PX, y + FACE_SIZE_PX],
            landmarks=[
                [x + 30, y + 40],
                [x + 70, y + 40],
                [x + 50, y + 60],
                [x + 35, y + 80],
                [x + 65, y + 80],
            ],
            detection_score=0.99,
            embedding=self.sighting(person),
            identity_id=person.identity_id,
            name=person.name if named else None,
            score=score if named else 0.5,
            candidate_id=person.identity_id,
        )

    @staticmethod
    def _unit(vector: Any) -> Embedding:
        return np.asarray(vector / np.linalg.norm(vector), dtype=np.float32)


def make_frame(
    number: int, faces: Sequence[FaceResult], camera: str = "door", **overrides: Any
) -> FrameResult:
    """Frame ``number`` of ``camera``, captured ``FRAME_INTERVAL_S`` after the previous one."""
    captured_at = START_S + number * FRAME_INTERVAL_S
    fields: dict[str, Any] = {
        "camera": camera,
        "number": number,
        "captured_at": captured_at,
        "faces": list(faces),
        "threshold": THRESHOLD,
        "margin": MARGIN,
        "calibration": "configuration",
        "embedder_version": EMBEDDER,
        "read_at": captured_at,
    }
    fields.update(overrides)
    return FrameResult(**fields)


def walk(people: People, person: Person, frames: Iterable[int], x0: float = 100.0) -> list[FrameResult]:
    """``person`` alone in each of ``frames``, moving ``STEP_PX`` to the right per frame."""
    return [make_frame(n, [people.face(person, x0 + STEP_PX * n)]) for n in frames]


def make_tracker(**overrides: Any) -> CameraTracker:
    return CameraTracker("door", TrackerConfig(**overrides), run_token="run1")


def feed(tracker: CameraTracker, frames: Iterable[FrameResult]) -> list[Event]:
    return [event for frame in frames for event in tracker.update(frame)]


def of_type(events: Iterable[Event], kind: EventType) -> list[Event]:
    return [event for event in events if event.type is kind]


def cosine(a: Embedding, b: Embedding) -> float:
    return float(np.dot(a, b))


def test_synthetic_people_score_as_real_ones_do() -> None:
    # given two sightings of one person, a look-alike and a stranger
    people = People()
    ada = people.person("id-ada", "Ada")
    twin = people.look_alike(ada, "id-twin")
    stranger = people.person(None)
    config = TrackerConfig()
    # then the same person scores above the tracker's bar and the others below it
    assert cosine(people.sighting(ada), people.sighting(ada)) > 0.95
    assert cosine(people.sighting(ada), people.sighting(twin)) < 0.9
    assert abs(cosine(people.sighting(ada), people.sighting(stranger))) < 0.5
    assert 0.9 < config.similarity_for(EMBEDDER) < 0.95, "the tests below assume the default bar"


def test_the_similarity_bar_follows_the_embedder_scale() -> None:
    # given the default tracker settings, then each embedder gets the bar measured for it
    config = TrackerConfig()
    assert config.similarity_for("dlib_resnet_v1+flip") == 0.93
    assert config.similarity_for("sface_2021dec+flip") == config.similarity_for("sface_2021dec") == 0.5
    # and a fine-tuned head's space, or an unknown model, gets the strict one
    assert config.similarity_for("sface_2021dec+flip+head-0123") == 0.93
    assert config.similarity_for("facenet_0123456789ab") == 0.93
    # and a configured bar overrides them all
    assert TrackerConfig(min_similarity=0.5).similarity_for("dlib_resnet_v1+flip") == 0.5


@pytest.mark.parametrize("min_votes", [1, 2, 4])
def test_one_person_over_ten_frames_is_one_track_and_one_recognized(min_votes: int) -> None:
    # given a tracker and Ada walking through ten frames
    people = People()
    ada = people.person("id-ada", "Ada Lovelace")
    tracker = make_tracker(min_votes=min_votes)
    # when the frames are tracked
    events = feed(tracker, walk(people, ada, range(10)))
    # then there is one track and one `recognized`, on the frame that gave the min_votes-th vote
    assert len(tracker.tracks) == 1, f"{len(tracker.tracks)} tracks for one person"
    assert [event.type for event in events] == [EventType.RECOGNIZED], "one event per visit, not per frame"
    recognized = events[0]
    assert (recognized.identity_id, recognized.name) == ("id-ada", "Ada Lovelace")
    assert recognized.frame == min_votes - 1 and recognized.track_frames == min_votes
    assert recognized.captured_at == iso_time(START_S + (min_votes - 1) * FRAME_INTERVAL_S)
    assert recognized.camera == "door" and recognized.track_id.startswith("door-run1-")
    assert (recognized.threshold, recognized.margin, recognized.embedder_version) == (
        THRESHOLD,
        MARGIN,
        EMBEDDER,
    )
    assert recognized.score == pytest.approx(0.97) and recognized.duration_s is None


def test_a_track_ends_after_max_gap_s_with_duration_and_frames() -> None:
    # given Ada seen on frames 0..9 (1.8 s of capture time), best matched on frame 4
    people = People()
    ada = people.person("id-ada", "Ada Lovelace")
    tracker = make_tracker(max_gap_s=1.0)
    scores = [0.90, 0.91, 0.92, 0.93, 0.96, 0.95, 0.94, 0.93, 0.92, 0.91]
    frames = [make_frame(n, [people.face(ada, 100 + STEP_PX * n, score=s)]) for n, s in enumerate(scores)]
    events = feed(tracker, frames)
    last_seen = START_S + 9 * FRAME_INTERVAL_S
    # when an empty frame comes just within max_gap_s, then nothing ends
    assert tracker.update(make_frame(14, [])) == [], "ended 0.2 s before max_gap_s"
    # when an empty frame comes after max_gap_s
    ended = tracker.update(make_frame(15, []))
    # then her track ends, saying how long and how many frames it lasted
    assert [event.type for event in ended] == [EventType.TRACK_ENDED]
    event = ended[0]
    assert event.track_id == events[0].track_id
    assert (event.identity_id, event.name) == ("id-ada", "Ada Lovelace")
    assert event.duration_s == pytest.approx(9 * FRAME_INTERVAL_S)
    assert event.track_frames == 10 and event.frame == 9
    assert event.captured_at == iso_time(last_seen), "track_ended carries the last sighting's time"
    # and the track's best sighting: its score, and the box it was seen in
    assert event.score == pytest.approx(0.96)
    assert event.box == frames[4].faces[0].box
    assert tracker.tracks == []


def test_a_scene_cut_to_someone_else_in_the_same_place_starts_a_new_track() -> None:
    # given Ada on frames 0..4, then her look-alike exactly where she was on frames 5..9
    people = People()
    ada = people.person("id-ada", "Ada")
    twin = people.look_alike(ada, "id-twin")
    frames = [make_frame(n, [people.face(ada if n < 5 else twin, 100.0)]) for n in range(10)]
    tracker = make_tracker()
    # when tracked
    events = feed(tracker, frames)
    # then each of them has a track and a `recognized` event of their own
    recognized = of_type(events, EventType.RECOGNIZED)
    assert [(event.identity_id, event.frame) for event in recognized] == [("id-ada", 1), ("id-twin", 6)]
    assert recognized[0].track_id != recognized[1].track_id, "the look-alike continued Ada's track"
    assert sorted(track.frames for track in tracker.tracks) == [5, 5]


def test_two_people_side_by_side_keep_two_tracks() -> None:
    # given Ada and Bob walking side by side (boxes 30 px apart), listed in either order
    people = People()
    ada, bob = people.person("id-ada", "Ada"), people.person("id-bob", "Bob")
    frames = []
    for n in range(10):
        faces = [people.face(ada, 100 + STEP_PX * n), people.face(bob, 230 + STEP_PX * n)]
        frames.append(make_frame(n, faces if n % 2 else faces[::-1]))
    tracker = make_tracker()
    # when tracked
    events = feed(tracker, frames)
    # then there are two tracks of ten frames, each recognized once as its own person
    assert sorted(track.frames for track in tracker.tracks) == [10, 10]
    assert all(len(track.votes) == 1 for track in tracker.tracks), "a track took the other's votes"
    recognized = of_type(events, EventType.RECOGNIZED)
    assert sorted(event.identity_id or "" for event in recognized) == ["id-ada", "id-bob"]
    assert len({event.track_id for event in recognized}) == 2
    assert len(events) == 2


@pytest.mark.parametrize(
    ("jump_px", "expected_tracks"),
    [
        (40.0, 1),  # overlapping boxes (IoU 0.43): the same track
        (150.0, 1),  # no overlap but within two widths (fast motion): the same track
        (300.0, 2),  # three widths away: a new track, even for the same face
    ],
)
def test_a_face_that_moves_far_between_frames(jump_px: float, expected_tracks: int) -> None:
    # given Ada on frame 0, then `jump_px` to the right on frame 1
    people = People()
    ada = people.person("id-ada", "Ada")
    tracker = make_tracker()
    # when both frames are tracked
    feed(
        tracker,
        [make_frame(0, [people.face(ada, 100.0)]), make_frame(1, [people.face(ada, 100.0 + jump_px)])],
    )
    # then the track continues or a new one starts
    assert len(tracker.tracks) == expected_tracks


def test_an_unmatched_track_gives_one_unknown_event() -> None:
    # given a stranger the gallery does not know, seen on 12 frames
    people = People()
    stranger = people.person(None)
    tracker = make_tracker(unknown_after_frames=8)
    # when tracked
    events = feed(tracker, walk(people, stranger, range(12)))
    # then one `unknown` comes on the 8th frame, naming nobody
    assert [event.type for event in events] == [EventType.UNKNOWN]
    unknown = events[0]
    assert unknown.frame == 7 and unknown.track_frames == 8
    assert (unknown.identity_id, unknown.name) == (None, None)
    # and its track ends naming nobody either
    (ended,) = tracker.end_all()
    assert (ended.type, ended.identity_id, ended.track_id) == (EventType.TRACK_ENDED, None, unknown.track_id)
    assert ended.track_frames == 12


def test_an_unknown_track_can_be_recognized_later() -> None:
    # given a track unmatched for 3 frames (far away, turned), then named on 2
    people = People()
    ada = people.person("id-ada", "Ada")
    far = Person(None, None, ada.embedding)  # the same face, not yet good enough to name
    frames = [make_frame(n, [people.face(far if n < 3 else ada, 100 + STEP_PX * n)]) for n in range(5)]
    tracker = make_tracker(unknown_after_frames=3, min_votes=2)
    # when tracked
    events = feed(tracker, frames)
    # then the one track gives `unknown` and then `recognized`
    assert [(event.type, event.frame) for event in events] == [
        (EventType.UNKNOWN, 2),
        (EventType.RECOGNIZED, 4),
    ]
    assert len({event.track_id for event in events}) == 1


def test_end_all_ends_every_track() -> None:
    # given two people being tracked
    people = People()
    ada, bob = people.person("id-ada", "Ada"), people.person("id-bob", "Bob")
    tracker = make_tracker()
    frames = [make_frame(n, [people.face(ada, 100.0), people.face(bob, 400.0)]) for n in range(3)]
    started = of_type(feed(tracker, frames), EventType.RECOGNIZED)
    # when the camera's stream ends
    ended = tracker.end_all()
    # then both tracks end, each once, and none is left
    assert [event.type for event in ended] == [EventType.TRACK_ENDED] * 2
    assert {event.track_id for event in ended} == {event.track_id for event in started}
    assert {event.identity_id for event in ended} == {"id-ada", "id-bob"}
    assert all(event.duration_s == pytest.approx(2 * FRAME_INTERVAL_S) for event in ended)
    assert tracker.tracks == [] and tracker.end_all() == []


def test_track_ids_are_unique_per_camera_and_run() -> None:
    # given two visits of Ada, separated by more than max_gap_s
    people = People()
    ada = people.person("id-ada", "Ada")
    tracker = make_tracker(max_gap_s=1.0)
    # when tracked
    events = feed(tracker, walk(people, ada, range(3)) + walk(people, ada, range(20, 23)))
    # then each visit has a track id of its own, recognized once each
    recognized = of_type(events, EventType.RECOGNIZED)
    assert len(recognized) == 2
    assert recognized[0].track_id != recognized[1].track_id
    assert [event.track_id for event in of_type(events, EventType.TRACK_ENDED)] == [recognized[0].track_id]
