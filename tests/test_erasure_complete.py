"""Erasure that really erases (defect 6 of issue 13).

A person is enrolled (with a kept photo), recognised by the real tracker so that they are in
the results and events streams and a cooldown key, corrected with ``feedback --is`` and
``--not``, opted in to aging and enrolled from an unknown cluster, with event thumbnails on
(``streamer.events.thumbnails``: workers' results carry face crops, the tracker keeps a JPEG
of each event's face). ``vigil people delete`` must then leave nothing of them: every key and
stream of Redis is read (SCAN, and a read per type) and every file of the data directory, the
append-only file after its rewrite included, for their name, their id, the float32 bytes (raw,
and base64 as the results stream carries them) of every embedding of them and the bytes of
every thumbnail of their events (raw, and base64). Another person, enrolled beside them, is
the control: the same scans must still find *them*, or the scans prove nothing.

The test's embedded Redis writes its snapshots uncompressed (``rdbcompression no``, on this
private server only): LZF compression could hide a name from a byte scan of the files.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import redis

from indexer.aging import set_opted_in
from indexer.corrections import Corrections, apply_feedback
from indexer.enroll import enroll_person
from indexer.erase import StreamKeys, erase_person
from indexer.gallery import Gallery
from indexer.identify import Identifier
from indexer.sources import SourceStore
from indexer.unknowns import UnknownSighting, UnknownStore, enroll_cluster
from streamer.analysis import FaceResult, FrameResult, face_crop_jpeg
from streamer.events import Event, EventType, read_events
from streamer.feedback import event_face
from streamer.thumbnails import event_thumbnail
from streamer.tracker import TrackerService
from tests.conftest import PEOPLE, people_image, require, stop_embedded
from tests.streamer.conftest import wait_for
from vigil.config import Settings
from vigil.config.redis import RedisConfig
from vigil.errors import EventError
from vigil.models.pipeline import FacePipeline
from vigil.streams import connect_redis
from vigil.typing import Embedding

pytestmark = [pytest.mark.redis, pytest.mark.slow]

OBAMA, BIDEN = "Barack Obama", "Joe Biden"
FRAMES = 6
FRAME_INTERVAL_S = 0.2
TRACKER_WAIT_S = 60.0


@dataclass
class Traces:
    """What identifies a person in stored bytes: name, id, every embedding and face image of theirs."""

    name: str
    identity_id: str
    embeddings: list[Embedding]
    thumbnails: list[bytes] = field(default_factory=list)

    def patterns(self) -> dict[str, bytes]:
        found = {"name": self.name.encode(), "identity id": self.identity_id.encode()}
        for number, embedding in enumerate(self.embeddings):
            raw = np.asarray(embedding, np.float32).astype("<f4").tobytes()
            found[f"embedding {number} (float32)"] = raw
            found[f"embedding {number} (base64)"] = base64.b64encode(raw)
        for number, jpeg in enumerate(self.thumbnails):
            found[f"thumbnail {number} (JPEG)"] = jpeg
            found[f"thumbnail {number} (base64)"] = base64.b64encode(jpeg)
        return found

    def found_in(self, haystacks: dict[str, bytes]) -> list[str]:
        """``what in where`` for every trace found."""
        return [
            f"{what} in {where}"
            for where, haystack in haystacks.items()
            for what, needle in self.patterns().items()
            if needle in haystack
        ]


def redis_contents(client: redis.Redis) -> dict[str, bytes]:
    """Every key of the server with everything it holds, read according to its type."""
    contents: dict[str, bytes] = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        parts: list[bytes] = [key]
        if kind == "string":
            parts.append(client.get(key) or b"")
        elif kind == "hash":
            parts += [item for pair in client.hgetall(key).items() for item in pair]
        elif kind == "list":
            parts += client.lrange(key, 0, -1)
        elif kind == "set":
            parts += list(client.smembers(key))
        elif kind == "zset":
            parts += [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            for entry_id, fields in client.xrange(key, "-", "+"):
                parts += [entry_id, *(item for pair in fields.items() for item in pair)]
        else:
            raise AssertionError(f"key {key!r} has a type the scan cannot read: {kind}")
        contents[f"key {key.decode(errors='replace')} ({kind})"] = b"\x00".join(parts)
    return contents


def disk_contents(home: Path) -> dict[str, bytes]:
    """Every file under the data directory (the AOF and RDB included), by path."""
    return {f"file {path.relative_to(home)}": path.read_bytes() for path in home.rglob("*") if path.is_file()}


@pytest.fixture
def world(tmp_path: Path, settings: Settings) -> Iterator[tuple[Settings, redis.Redis]]:
    """Settings with a fresh data directory (photos kept, event thumbnails on, no attribute head)
    and its embedded Redis."""
    home = tmp_path / "home"
    world_settings = settings.model_copy(
        update={
            "home": home,
            "indexer": settings.indexer.model_copy(update={"keep_sources": True}),
            "streamer": settings.streamer.model_copy(
                update={
                    "tracker": settings.streamer.tracker.model_copy(update={"attributes": False}),
                    "events": settings.streamer.events.model_copy(update={"thumbnails": True}),
                }
            ),
        }
    )
    client = connect_redis(RedisConfig(), home)
    client.config_set("rdbcompression", "no")  # see the module docstring
    yield world_settings, client
    stop_embedded(client)


def frame_results(identifier: Identifier, camera: str, photo: str) -> list[FrameResult]:
    """``FRAMES`` frames of one camera showing one photo, named and cropped as a worker with event
    thumbnails on names and crops them, then its end."""
    image = people_image(photo)
    faces = [
        FaceResult.from_identification(found, face_crop_jpeg(image, found.face.box_xyxy.tolist()))
        for found in identifier.identify(image)
    ]
    rule = identifier.rule()
    start = time.time() - 10
    results = [
        FrameResult(
            camera,
            number,
            start + number * FRAME_INTERVAL_S,
            faces,
            threshold=rule.threshold,
            margin=rule.margin,
            calibration=rule.source,
            embedder_version=identifier.space_version,
            read_at=time.time(),
        )
        for number in range(FRAMES)
    ]
    return [*results, FrameResult(camera, FRAMES, start + FRAMES * FRAME_INTERVAL_S, [], True)]


def run_tracker(client: redis.Redis, settings: Settings, results: list[FrameResult]) -> None:
    """The real tracker on these results, until both cameras have ended."""
    service = TrackerService(client, settings, "erasure", finish_after={result.camera for result in results})
    service.ensure_group()  # the group reads new entries only: create it before writing
    for result in results:
        client.xadd(settings.streamer.bus.faces_stream, result.to_fields())  # type: ignore[arg-type]
    errors: list[BaseException] = []
    stop = threading.Event()

    def run() -> None:
        try:
            service.run(stop)
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(TRACKER_WAIT_S)
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and not errors, f"the tracker failed or hung: {errors}"


def thumbnails_of(client: redis.Redis, settings: Settings, events: list[Event]) -> list[bytes]:
    """The thumbnails of these events (each must have one: thumbnails are on)."""
    found = [event_thumbnail(client, settings, event.event_id) for event in events]
    assert None not in found, f"an event has no thumbnail: {[e.event_id for e in events]}"
    return [jpeg for jpeg in found if jpeg is not None]


def result_embeddings(client: redis.Redis, settings: Settings, identity_id: str) -> list[Embedding]:
    """The embeddings of the faces the results stream names as this person."""
    found = []
    for _, fields in client.xrange(settings.streamer.bus.faces_stream, "-", "+"):
        result = FrameResult.from_fields(fields)
        found += [face.embedding for face in result.faces if face.identity_id == identity_id]
    return found


def test_people_delete_leaves_no_trace(
    world: tuple[Settings, redis.Redis], pipeline: FacePipeline, caplog: pytest.LogCaptureFixture
) -> None:
    settings, client = world
    caplog.set_level(logging.DEBUG)
    gallery = Gallery(client)
    sources = SourceStore.from_settings(settings)
    identifier = Identifier.from_settings(gallery, pipeline, settings)
    # given Obama and Biden enrolled, Obama with his photo kept
    obama = enroll_person(
        identifier, settings.indexer, OBAMA, [require(PEOPLE / "obama.jpg")], sources=sources
    )
    biden = enroll_person(identifier, settings.indexer, BIDEN, [require(PEOPLE / "biden.jpg")])
    obama_id, biden_id = obama.identity.identity_id, biden.identity.identity_id
    # and both recognised by the tracker on two cameras (results, events, cooldown keys)
    run_tracker(
        client,
        settings,
        frame_results(identifier, "door", "obama2.jpg") + frame_results(identifier, "yard", "biden.jpg"),
    )
    events = [event for _, event in read_events(client, settings.streamer.events)]
    recognized = {event.name: event for event in events if event.type is EventType.RECOGNIZED}
    assert set(recognized) == {OBAMA, BIDEN}, [(event.type, event.name) for event in events]
    # and corrected: Obama's event confirmed (a template), Biden's event "not Obama" (a negative)
    unknowns = UnknownStore(gallery, settings.indexer.unknowns.retention_s)
    for event, verdict in ((recognized[OBAMA], "is"), (recognized[BIDEN], "not")):
        face = event_face(client, settings, unknowns, event.event_id)
        apply_feedback(gallery, event.event_id, verdict, OBAMA, face.embedder_version, face.embedding)  # type: ignore[arg-type]
    # and opted in to aging, and given more templates from an unknown cluster of his
    set_opted_in(gallery, obama_id, True)
    stranger = max(pipeline.analyze([people_image("obama-480p.jpg")])[0], key=lambda f: f.size_px).embedding
    captured_at, version = recognized[OBAMA].captured_at, pipeline.embedder.version
    unknowns.keep(
        UnknownSighting("c" * 32, "door", "t9", captured_at, version, stranger[None, :], [1.0], ["c" * 32])
    )
    (cluster,) = unknowns.cluster(pipeline.embedder.version, threshold=0.5)
    enroll_cluster(unknowns, cluster.cluster_id, OBAMA)
    # every trace of Obama, and Biden's as the control (Obama's negative is Biden's face: the
    # negative goes, with Obama's id in it, but the same bytes stay in Biden's own template)
    assert len(Corrections(gallery).identity_negatives(obama_id)) == 1
    obama_traces = Traces(
        OBAMA,
        obama_id,
        [t.embedding for t in gallery.identity_templates(obama_id)]
        + result_embeddings(client, settings, obama_id),
        thumbnails_of(client, settings, [event for event in events if event.camera == "door"]),
    )
    biden_traces = Traces(
        BIDEN,
        biden_id,
        [t.embedding for t in gallery.identity_templates(biden_id)],
        thumbnails_of(client, settings, [event for event in events if event.camera == "yard"]),
    )
    assert len(obama_traces.embeddings) >= 5
    before = {**redis_contents(client), **disk_contents(settings.home)}
    assert len(obama_traces.found_in(before)) >= len(obama_traces.patterns()), "the scans cannot see Obama"
    assert any("appendonly.aof" in found for found in obama_traces.found_in(before)), "the AOF is not scanned"

    # when Obama is deleted
    erased = erase_person(gallery, sources, obama_id, StreamKeys.from_settings(settings))

    # then nothing of him is left in any key or stream, nor in any file of the data directory
    assert erased.events >= 2 and erased.results >= FRAMES and erased.photos == 1, erased
    redis_after, disk_after = redis_contents(client), disk_contents(settings.home)
    assert obama_traces.found_in(redis_after) == [], "left in Redis"
    assert obama_traces.found_in(disk_after) == [], "left on disk"
    # while Biden is still there, in Redis and in the rewritten files
    biden_left = biden_traces.found_in({**redis_after, **disk_after})
    assert any("appendonly.aof" in found for found in biden_left), biden_left
    assert any(found.startswith("name in key") for found in biden_left), biden_left
    assert any(found.startswith("thumbnail 0 (JPEG) in key") for found in biden_left), biden_left
    # and `vigil events --identity` shows nothing of him, and his events cannot be corrected again
    assert list(read_events(client, settings.streamer.events, identity=OBAMA)) == []
    assert list(read_events(client, settings.streamer.events, identity=obama_id)) == []
    with pytest.raises(EventError):
        event_face(client, settings, unknowns, recognized[OBAMA].event_id)
    # and no log line named him (logs outlive erasure): ids only
    named = [record.getMessage() for record in caplog.records if OBAMA in record.getMessage()]
    assert named == [], named


def _recognized(client: redis.Redis, settings: Settings, name: str) -> bool:
    events = read_events(client, settings.streamer.events)
    return any(event.type is EventType.RECOGNIZED and event.name == name for _, event in events)


@pytest.mark.parametrize(
    "tracker_fate",
    [
        # the tracker runs on through the erasure, the person's track still open in it
        "running",
        # the tracker was killed mid-visit: only its state in Redis holds the open track, and the
        # next run ends that track
        "killed",
    ],
)
def test_erasure_reaches_the_trackers_open_tracks(
    world: tuple[Settings, redis.Redis], pipeline: FacePipeline, tracker_fate: str
) -> None:
    settings, client = world
    # tracks end by their camera's end only, not by the wall clock while the test erases
    tracker = settings.streamer.tracker.model_copy(update={"max_gap_s": 60.0})
    settings = settings.model_copy(
        update={"streamer": settings.streamer.model_copy(update={"tracker": tracker})}
    )
    gallery = Gallery(client)
    sources = SourceStore.from_settings(settings)
    identifier = Identifier.from_settings(gallery, pipeline, settings)
    obama = enroll_person(identifier, settings.indexer, OBAMA, [require(PEOPLE / "obama.jpg")])
    obama_id = obama.identity.identity_id
    *visit, end = frame_results(identifier, "door", "obama2.jpg")
    faces_stream = settings.streamer.bus.faces_stream
    # given Obama on camera: the tracker has recognised him and his track is open
    service = TrackerService(client, settings, "erasure", finish_after={"door"})
    service.ensure_group()
    for result in visit:
        client.xadd(faces_stream, result.to_fields())  # type: ignore[arg-type]
    stop = threading.Event()
    errors: list[BaseException] = []

    def run(tracker: TrackerService) -> None:
        try:
            tracker.run(stop)
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    thread = threading.Thread(target=run, args=(service,), daemon=True)
    if tracker_fate == "running":
        thread.start()
        assert wait_for(lambda: _recognized(client, settings, OBAMA), TRACKER_WAIT_S), errors
    else:  # the same steps by hand, then the tracker is gone without ending anything
        service._restore()
        deadline = time.monotonic() + TRACKER_WAIT_S
        while not _recognized(client, settings, OBAMA) and time.monotonic() < deadline:
            service._consume()
    recognized = [e for _, e in read_events(client, settings.streamer.events) if e.name == OBAMA]
    traces = Traces(
        OBAMA,
        obama_id,
        [t.embedding for t in gallery.identity_templates(obama_id)]
        + result_embeddings(client, settings, obama_id),
        thumbnails_of(client, settings, recognized),
    )
    found = traces.found_in(redis_contents(client))
    tracker_keys = f"{faces_stream}:tracker:"
    assert any(tracker_keys in where for where in found), f"the open track is not in the state: {found}"

    # when Obama is deleted while his track is open
    erase_person(gallery, sources, obama_id, StreamKeys.from_settings(settings), rewrite_files=False)

    # then nothing of him is left in Redis, the tracker's state included
    assert wait_for(lambda: traces.found_in(redis_contents(client)) == [], 5), traces.found_in(
        redis_contents(client)
    )
    # and when the track ends (his camera's stream ends; a new run for a killed tracker)
    client.xadd(faces_stream, end.to_fields())  # type: ignore[arg-type]
    if tracker_fate == "killed":
        thread = threading.Thread(
            target=run,
            args=(TrackerService(client, settings, "next-run", finish_after={"door"}),),
            daemon=True,
        )
        thread.start()
    thread.join(TRACKER_WAIT_S)
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and not errors, f"the tracker failed or hung: {errors}"
    # then no event names him, and still nothing of him is in any key or stream
    events = [event for _, event in read_events(client, settings.streamer.events)]
    named = [event for event in events if event.identity_id == obama_id or event.name == OBAMA]
    assert named == [], [(event.type, event.track_id) for event in named]
    assert traces.found_in(redis_contents(client)) == [], "left in Redis after the track ended"


def test_a_stale_workers_results_never_announce_someone_erased_before_the_tracker_met_them(
    world: tuple[Settings, redis.Redis], pipeline: FacePipeline
) -> None:
    settings, client = world
    gallery = Gallery(client)
    sources = SourceStore.from_settings(settings)
    identifier = Identifier.from_settings(gallery, pipeline, settings)
    # given Obama enrolled, and frames a worker named him on before it learnt of his erasure
    obama = enroll_person(identifier, settings.indexer, OBAMA, [require(PEOPLE / "obama.jpg")])
    obama_id = obama.identity.identity_id
    stale_results = frame_results(identifier, "door", "obama2.jpg")
    assert any(face.identity_id == obama_id for face in stale_results[0].faces), "the worker named him"
    # when he is erased before any tracker met him, and only then do those results reach one
    erase_person(gallery, sources, obama_id, StreamKeys.from_settings(settings), rewrite_files=False)
    run_tracker(client, settings, stale_results)
    # then no event names him, and the erasure left no trace of his id
    events = [event for _, event in read_events(client, settings.streamer.events)]
    named = [event for event in events if event.identity_id == obama_id or event.name == OBAMA]
    assert named == [], [(event.type, event.track_id) for event in named]
    contents = {where: data for where, data in redis_contents(client).items() if "vigil:faces" not in where}
    assert not [where for where, data in contents.items() if obama_id.encode() in data], "his id outlived him"
