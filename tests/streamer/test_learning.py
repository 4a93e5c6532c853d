"""What the stream learns, end to end on real photos, real models and a real (embedded) Redis.

Each "visit" is one real photo seen for a few frames, as a person standing at a camera:
the worker's part is done by ``Identifier.name_faces`` on the photo (exactly what a worker
publishes), the results go to the faces stream, and the real ``TrackerService`` tracks
them, publishes events and hands their outcomes to ``streamer.learning``. Visits are
``VISIT_GAP_S`` apart in capture time, so each is a track of its own. The CLI runs as a
user runs it, against the same embedded server (``VIGIL_HOME`` is the test's home).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from indexer.corrections import Corrections, feedback_pairs, undo
from indexer.enroll import enroll_person
from indexer.gallery import Gallery
from indexer.identify import Identifier
from indexer.unknowns import UnknownStore
from streamer.analysis import FACE_CROP_MAX_SIDE_PX, FaceResult, FrameResult
from streamer.bus import FrameBus
from streamer.events import Event, EventType, read_events
from streamer.tracker import TrackerService
from streamer.worker import Worker
from tests.conftest import LFW, PEOPLE, dlib_settings, require, stop_embedded
from tests.test_cli import run_vigil
from vigil.config import Settings
from vigil.config.redis import RedisConfig
from vigil.image import decode_image, load_image
from vigil.models.pipeline import FacePipeline
from vigil.streams import connect_redis

pytestmark = [pytest.mark.redis, pytest.mark.slow]

FRAMES_PER_VISIT = 4
FRAME_INTERVAL_S = 0.2
VISIT_GAP_S = 5.0  # well over max_gap_s: every visit is a new track
START_S = 1_795_341_600.0
LFW_FACES = LFW / "lfw-deepfunneled"


def lfw_photo(name: str, number: int) -> Path:
    return require(LFW_FACES / name / f"{name}_{number:04d}.jpg")


def stream_settings(settings: Settings, indexer: dict[str, object] | None = None) -> Settings:
    """Test settings: an `unknown` after 3 unmatched frames, no reorder wait, no cooldown."""
    tracker = settings.streamer.tracker.model_copy(
        update={"unknown_after_frames": 3, "reorder_window_ms": 0, "cooldown_s": 0.0, "max_gap_s": 1.0}
    )
    streamer = settings.streamer.model_copy(update={"tracker": tracker})
    indexer_settings = settings.indexer.model_validate({**settings.indexer.model_dump(), **(indexer or {})})
    return settings.model_copy(update={"streamer": streamer, "indexer": indexer_settings})


@pytest.fixture
def home(tmp_path: Path) -> Iterator[tuple[Path, redis.Redis]]:
    """A VIGIL_HOME with its embedded Redis running, shared by this process and the CLI."""
    client = connect_redis(RedisConfig(), tmp_path)
    yield tmp_path, client
    stop_embedded(client)


def visit_results(identifier: Identifier, photos: list[Path], camera: str = "door") -> list[FrameResult]:
    """Every photo seen for ``FRAMES_PER_VISIT`` frames, visits ``VISIT_GAP_S`` apart, then end of stream."""
    results: list[FrameResult] = []
    number = 0
    rule = identifier.thresholds()
    for visit, photo in enumerate(photos):
        faces = identifier.pipeline.analyze([load_image(photo)])[0]
        largest = max(faces, key=lambda face: face.size_px)
        named = identifier.name_faces([largest])[0]
        rule = identifier.thresholds()
        for frame in range(FRAMES_PER_VISIT):
            results.append(
                FrameResult(
                    camera=camera,
                    number=number,
                    captured_at=START_S + visit * VISIT_GAP_S + frame * FRAME_INTERVAL_S,
                    faces=[FaceResult.from_identification(named)],
                    threshold=rule.threshold,
                    margin=rule.margin,
                    calibration=rule.source,
                    embedder_version=identifier.space_version,
                )
            )
            number += 1
    results.append(FrameResult(camera, number, START_S + len(photos) * VISIT_GAP_S, [], end_of_stream=True))
    return results


def run_tracker(
    client: redis.Redis, settings: Settings, gallery: Gallery, results: list[FrameResult]
) -> list[Event]:
    """Track ``results`` with the real tracker service until their cameras end; the new events."""

    def feed() -> None:
        for result in results:
            client.xadd(settings.streamer.bus.faces_stream, result.to_fields())  # type: ignore[arg-type]

    return track(client, settings, gallery, {result.camera for result in results}, feed)


def run_worker(
    client: redis.Redis, settings: Settings, pipeline: FacePipeline, photos: list[Path], camera: str = "door"
) -> list[Event]:
    """``visit_results``' visits as the service sees them: frames on the bus, the real worker, the tracker."""

    def feed() -> None:
        bus = FrameBus(client, settings.streamer.bus)
        bus.ensure_group()
        worker = Worker(client, settings, pipeline)
        number = 0
        for visit, photo in enumerate(photos):
            image = load_image(photo)
            for frame in range(FRAMES_PER_VISIT):
                bus.publish(camera, number, START_S + visit * VISIT_GAP_S + frame * FRAME_INTERVAL_S, image)
                number += 1
        bus.publish_end(camera, number)
        while worker.step():
            pass

    return track(client, settings, Gallery(client), {camera}, feed)


def track(
    client: redis.Redis, settings: Settings, gallery: Gallery, cameras: set[str], feed: Callable[[], None]
) -> list[Event]:
    """Run the real tracker service on what ``feed`` writes to the faces stream until ``cameras`` end."""
    before = {event.event_id for _, event in read_events(client, settings.streamer.events)}
    service = TrackerService(client, settings, "test", cameras, gallery)
    service.ensure_group()  # before the results: a new group starts at new entries
    feed()
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    thread.join(60)
    stop.set()
    assert not thread.is_alive(), "the tracker did not finish the visits within 60 s"
    return [
        event for _, event in read_events(client, settings.streamer.events) if event.event_id not in before
    ]


def test_unknown_visits_of_two_people_form_two_clusters_and_enrolling_one_names_the_next_visit(
    home: tuple[Path, redis.Redis], settings: Settings, pipeline: FacePipeline
) -> None:
    path, client = home
    config = stream_settings(settings)
    gallery = Gallery(client)
    identifier = Identifier.from_settings(gallery, pipeline, config)
    # given three visits each of two people nobody enrolled (different photos, years apart in LFW)
    chavez = [lfw_photo("Hugo_Chavez", n) for n in (1, 2, 3)]
    serena = [lfw_photo("Serena_Williams", n) for n in (1, 2, 3)]
    events = run_tracker(client, config, gallery, visit_results(identifier, chavez + serena))
    unknown_events = [event for event in events if event.type is EventType.UNKNOWN]
    assert len(unknown_events) == 6, f"one unknown event per visit: {[e.type for e in events]}"
    store = UnknownStore(gallery, config.indexer.unknowns.retention_s)
    kept = store.entries()
    assert len(kept) == 6 and all(len(s.embeddings) >= 1 for s in kept), "every unknown visit keeps its faces"
    assert all(s.entry_id == e.event_id for s, e in zip(kept, unknown_events, strict=True))
    # when the CLI clusters them (threshold: the calibrated 1:1 rule)
    clustered = run_vigil("unknowns", "cluster", home=path)
    assert clustered.returncode == 0, clustered.stderr
    assert "6 unknown track(s) in 2 cluster(s)" in clustered.stdout, clustered.stdout
    listed = run_vigil("unknowns", "list", "--json", home=path)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    # then each cluster is exactly one person's three visits
    chavez_events = {event.event_id for event in unknown_events[:3]}
    serena_events = {event.event_id for event in unknown_events[3:]}
    clusters = {row["cluster"]: set(row["event_ids"]) for row in rows}
    assert len(clusters) == 2, rows
    assert sorted(
        (ids >= chavez_events, ids >= serena_events, bool(ids & chavez_events and ids & serena_events))
        for ids in clusters.values()
    ) == [(False, True, False), (True, False, False)], rows
    chavez_cluster = next(cluster for cluster, ids in clusters.items() if ids >= chavez_events)
    # when the Chávez cluster is enrolled in one step
    enrolled = run_vigil("unknowns", "enroll", str(chavez_cluster), "Hugo Chavez", home=path)
    assert enrolled.returncode == 0, enrolled.stderr
    assert f"enrolled cluster {chavez_cluster} as Hugo Chavez" in enrolled.stdout
    # then his next visit (a photo not seen before) is recognised, and Serena still is not
    assert [r.name for r in identifier.identify(load_image(lfw_photo("Hugo_Chavez", 4)))] == ["Hugo Chavez"]
    serena_next = identifier.identify(load_image(lfw_photo("Serena_Williams", 4)))
    assert serena_next and all(r.name is None for r in serena_next)
    # and the cluster's entries were consumed; its record says whom it became
    assert len(store.entries()) == 3, "only Serena's visits are still kept"
    chavez = gallery.get_by_name("Hugo Chavez")
    assert store.get_cluster(chavez_cluster).enrolled_as == chavez.identity_id
    assert {entry.origin for entry in gallery.history(chavez.identity_id)} == {"unknowns"}


def test_feedback_not_name_stops_the_same_face_being_taken_for_them(
    home: tuple[Path, redis.Redis], settings: Settings, pipeline: FacePipeline
) -> None:
    path, client = home
    # given a permissive rule (similarity 0.0; SFace scores Biden 0.08 against Obama): Biden's face
    # is taken for the only person enrolled
    config = stream_settings(settings, {"match_threshold": 0.0, "match_margin": 0.03})
    gallery = Gallery(client)
    identifier = Identifier.from_settings(gallery, pipeline, config)
    enroll_person(identifier, config.indexer, "Barack Obama", [require(PEOPLE / "obama.jpg")])
    biden, obama2 = require(PEOPLE / "biden.jpg"), require(PEOPLE / "obama2.jpg")
    events = run_tracker(client, config, gallery, visit_results(identifier, [biden]))
    recognized = [event for event in events if event.type is EventType.RECOGNIZED]
    assert [event.name for event in recognized] == ["Barack Obama"], "the false match to correct"
    # when the user says that face is not Obama
    corrected = run_vigil("feedback", recognized[0].event_id, "--not", "Barack Obama", home=path)
    assert corrected.returncode == 0, corrected.stderr
    assert "hard negative" in corrected.stdout
    # then the same face is no longer recognised as Obama, while another photo of him still is
    assert [r.name for r in identifier.identify(load_image(biden))] == [None]
    assert [r.name for r in identifier.identify(load_image(obama2))] == ["Barack Obama"]
    # and the correction is audited and offered to calibration
    obama = gallery.get_by_name("Barack Obama")
    history = gallery.history(obama.identity_id)
    assert [(e.action, e.item, e.origin, e.event_id) for e in history][-1] == (
        "added",
        "negative",
        "feedback",
        recognized[0].event_id,
    )
    (kept,) = Corrections(gallery).feedback()
    assert (kept.verdict, kept.name, kept.event_id) == ("not", "Barack Obama", recognized[0].event_id)
    # when the negative is undone, then Biden is taken for Obama again (under this rule)
    undo(gallery, obama.identity_id, history[-1].entry)
    assert [r.name for r in identifier.identify(load_image(biden))] == ["Barack Obama"]


def test_feedback_is_name_makes_an_unknown_face_a_template(
    home: tuple[Path, redis.Redis], settings: Settings, pipeline: FacePipeline
) -> None:
    path, client = home
    # given Obama enrolled, but a rule so strict (0.99) that his other photo is unknown
    config = stream_settings(settings, {"match_threshold": 0.99, "match_margin": 0.0})
    gallery = Gallery(client)
    identifier = Identifier.from_settings(gallery, pipeline, config)
    enroll_person(identifier, config.indexer, "Barack Obama", [require(PEOPLE / "obama.jpg")])
    probe = require(PEOPLE / "obama2.jpg")
    events = run_tracker(client, config, gallery, visit_results(identifier, [probe]))
    (unknown,) = [event for event in events if event.type is EventType.UNKNOWN]
    # when the user says the unknown face is Obama
    corrected = run_vigil("feedback", unknown.event_id, "--is", "Barack Obama", home=path)
    assert corrected.returncode == 0, corrected.stderr
    # then it is a template of his (from feedback), and the same face is named now
    obama = gallery.get_by_name("Barack Obama")
    origins = [t.origin for t in gallery.identity_templates(obama.identity_id)]
    assert sorted(origins) == ["enrol", "feedback"]
    assert [r.name for r in identifier.identify(load_image(probe))] == ["Barack Obama"]
    version = pipeline.embedder.version
    assert [pair.same for pair in feedback_pairs(Corrections(gallery), version)] == [True], "for calibration"
    # and the unknown entry became the template: it is no longer kept as unknown
    assert UnknownStore(gallery, 60.0).entry_for_event(unknown.event_id) is None


def test_template_aging_follows_a_face_over_the_years(
    home: tuple[Path, redis.Redis], settings: Settings, dlib_pipeline: FacePipeline
) -> None:
    """Fidel Castro: LFW holds news photos of him from about 1990 to 2004.

    Picked by eye: ``Fidel_Castro_0008`` shows him with a full dark beard (the youngest of
    his 18), ``Fidel_Castro_0006`` with a white beard and a thin, aged face (among the
    oldest). The dlib embeddings agree: 0008 and 0006 score 0.903, below the 0.909 the
    calibration demands with one person enrolled, while the grey-bearded 0002 and 0009
    bridge the years (0.947 and 0.939 to 0008, 0.943 and 0.956 to 0006). So this test runs
    dlib's family: SFace, the default, already scores every pair of his 18 photos above its
    one-person threshold (0.32 or more against 0.29), so it needs no aging here.
    """
    path, client = home
    config = stream_settings(
        dlib_settings(settings),
        {"aging": {"enabled": True, "min_margin": 0.0, "min_face_px": 40, "min_track_frames": 3}},
    )
    pipeline = dlib_pipeline
    gallery = Gallery(client)
    identifier = Identifier.from_settings(gallery, pipeline, config)
    young, old = lfw_photo("Fidel_Castro", 8), lfw_photo("Fidel_Castro", 6)
    enroll_person(identifier, config.indexer, "Fidel Castro", [young])
    # given the young photo alone, the old face is not recognised
    assert [r.name for r in identifier.identify(load_image(old))] == [None]
    # when he is seen (and confidently recognised) in later years, and once more with a photo already aged in
    bridges = [lfw_photo("Fidel_Castro", 2), lfw_photo("Fidel_Castro", 9)]
    events = run_tracker(client, config, gallery, visit_results(identifier, [*bridges, bridges[0]]))
    assert [e.name for e in events if e.type is EventType.RECOGNIZED] == ["Fidel Castro"] * 3
    fidel = gallery.get_by_name("Fidel Castro")
    aging = [t for t in gallery.identity_templates(fidel.identity_id) if t.origin == "aging"]
    # then each new look became a template with its capture time, the repeat was skipped as a near-duplicate
    assert len(aging) == 2, [t.source for t in aging]
    assert all(t.captured_at is not None and t.event_id is not None for t in aging)
    # and the old face is now found through the best (aged) template
    (found,) = identifier.identify(load_image(old))
    assert found.name == "Fidel Castro", f"similarity {found.decision.score:.3f}"
    assert found.decision.candidates[0].template_id in {t.template_id for t in aging}
    # when the history is listed, then both additions are there, with their events
    listed = run_vigil("people", "history", "Fidel Castro", home=path)
    assert listed.stdout.count("added template") == 3 and listed.stdout.count(" aging event ") == 2, (
        listed.stdout
    )
    # when every aging addition is undone via the CLI, then the old face is unknown again
    for entry in [e for e in gallery.history(fidel.identity_id) if e.origin == "aging"]:
        undone = run_vigil("people", "history", "Fidel Castro", "--undo", str(entry.entry), home=path)
        assert undone.returncode == 0, undone.stderr
    assert [t.origin for t in gallery.identity_templates(fidel.identity_id)] == ["enrol"]
    assert [r.name for r in identifier.identify(load_image(old))] == [None]
    assert gallery.history(fidel.identity_id)[-1].origin == "undo"


def jpegs_in(gallery: Gallery) -> list[bytes]:
    """Keys of the gallery's namespace holding a JPEG (the frame bus and results streams left out)."""
    client, found = gallery.client, []
    for key in client.scan_iter(match=f"{gallery.namespace}:*"):
        kind = client.type(key).decode()
        values = list(client.hgetall(key).values()) if kind == "hash" else []
        values += [client.get(key) or b""] if kind == "string" else []
        found += [key for value in values if value.startswith(b"\xff\xd8")]
    return found


def test_unknown_faces_keep_no_image_unless_opted_in(
    home: tuple[Path, redis.Redis], settings: Settings, pipeline: FacePipeline
) -> None:
    path, client = home
    config = stream_settings(settings)
    assert not config.indexer.unknowns.keep_images, "images of unknown faces are off by default"
    # given a stranger's visit through the real bus, worker and tracker, with the default settings
    events = run_worker(client, config, pipeline, [lfw_photo("Serena_Williams", 1)])
    assert [e.type for e in events].count(EventType.UNKNOWN) == 1, [e.type for e in events]
    # then the workers' results carried no crop, and the kept track has embeddings only
    results = client.xrange(config.streamer.bus.faces_stream)
    faces = [face for _, fields in results for face in FrameResult.from_fields(fields).faces]
    assert faces and all(face.crop_jpeg is None for face in faces), "no crop travels without the opt-in"
    gallery = Gallery(client)
    store = UnknownStore(gallery, config.indexer.unknowns.retention_s)
    (kept,) = store.entries()
    assert store.images([kept.entry_id]) == {} and jpegs_in(gallery) == []
    # and the CLI has no image to show or export
    assert run_vigil("unknowns", "cluster", home=path).returncode == 0
    listed = run_vigil("unknowns", "list", "--images", str(path / "faces"), home=path)
    assert listed.returncode == 0, listed.stderr
    assert "face image" not in listed.stdout and not list((path / "faces").iterdir()), listed.stdout


def test_opted_in_unknown_tracks_keep_their_face_until_forgotten(
    home: tuple[Path, redis.Redis], settings: Settings, pipeline: FacePipeline
) -> None:
    path, client = home
    config = stream_settings(settings, {"unknowns": {"keep_images": True}})
    # given two visits of a stranger through the real bus, worker and tracker, with images opted in
    events = run_worker(client, config, pipeline, [lfw_photo("Serena_Williams", n) for n in (1, 2)])
    assert [e.type for e in events].count(EventType.UNKNOWN) == 2, [e.type for e in events]
    gallery = Gallery(client)
    store = UnknownStore(gallery, config.indexer.unknowns.retention_s)
    kept = store.entries()
    images = store.images([sighting.entry_id for sighting in kept])
    # then each kept track has a small JPEG of her best face, whose face embeds like the kept one
    assert len(kept) == 2 and set(images) == {sighting.entry_id for sighting in kept}
    for sighting in kept:
        crop = decode_image(images[sighting.entry_id])
        assert max(crop.shape[:2]) <= FACE_CROP_MAX_SIDE_PX and len(images[sighting.entry_id]) < 10_000
        (face,) = pipeline.analyze([crop])[0]
        kept_face = sighting.embeddings[0]
        similarity = float(face.embedding @ kept_face) / float(
            np.linalg.norm(face.embedding) * np.linalg.norm(kept_face)
        )
        # (one person's different photos score 0.6-0.8 with SFace; a re-encoded crop of the same face 0.95+)
        assert similarity > 0.9, f"the image's face is not the kept face: similarity {similarity:.3f}"
    # when the CLI clusters them and exports the cluster's images
    assert run_vigil("unknowns", "cluster", home=path).returncode == 0
    listed = run_vigil("unknowns", "list", home=path)
    assert "2 face image(s) (see them: --images DIR)" in listed.stdout, listed.stdout
    exported = run_vigil("unknowns", "list", "--json", "--images", str(path / "faces"), home=path)
    assert exported.returncode == 0, exported.stderr
    (row,) = [json.loads(line) for line in exported.stdout.splitlines()]
    # then the listing says where each image is, and the files are the kept JPEGs
    assert row["images"] == 2 and len(row["image_files"]) == 2, row
    assert {Path(file).read_bytes() for file in row["image_files"]} == set(images.values())
    assert all(Path(file).parent == path / "faces" / str(row["cluster"]) for file in row["image_files"])
    # when the cluster is forgotten, then its images went with its embeddings
    forgot = run_vigil("unknowns", "forget", str(row["cluster"]), home=path)
    assert forgot.returncode == 0, forgot.stderr
    assert store.entries() == [] and store.images(list(images)) == {} and jpegs_in(gallery) == []


def test_enrolling_or_erasing_leaves_no_image_of_the_person(
    home: tuple[Path, redis.Redis], settings: Settings, pipeline: FacePipeline
) -> None:
    path, client = home
    config = stream_settings(settings, {"unknowns": {"keep_images": True}})
    # given Chávez's visits kept with images, clustered
    run_worker(client, config, pipeline, [lfw_photo("Hugo_Chavez", n) for n in (1, 2)])
    gallery = Gallery(client)
    assert len(jpegs_in(gallery)) == 2
    assert run_vigil("unknowns", "cluster", home=path).returncode == 0
    (cluster,) = UnknownStore(gallery, 60.0).clusters()
    # when his cluster is enrolled, then its images go with the entries (they are not templates)
    enrolled = run_vigil("unknowns", "enroll", str(cluster.cluster_id), "Hugo Chavez", home=path)
    assert enrolled.returncode == 0, enrolled.stderr
    assert jpegs_in(gallery) == [], (
        "enrolment keeps templates, not images (indexer.keep_sources is that opt-in)"
    )
    # when he is erased, then nothing of him is left either
    erased = run_vigil("people", "delete", "Hugo Chavez", home=path)
    assert erased.returncode == 0, erased.stderr
    assert jpegs_in(gallery) == [] and UnknownStore(gallery, 60.0).clusters() == []
