"""Event thumbnails (``streamer.events.thumbnails``): a JPEG of each event's face, opt-in.

The real service (``vigil run``, its own processes) runs once over the shared clip with the
setting on, Obama and Miranda enrolled: every event keeps a thumbnail that decodes as a JPEG,
Obama's are his face, they expire with the events, the API serves them, and erasing Obama
deletes his while Miranda's stay. With the setting off (the default) the real worker and
tracker, on the clip's frames of Obama, crop no matched face and write no thumbnail.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from indexer.erase import erase_person_named
from indexer.gallery import Gallery
from indexer.identify import Identifier
from streamer.analysis import FaceResult, FrameResult, face_crop_jpeg
from streamer.bench_setup import decode_clip, enroll_people, temporary_home
from streamer.events import Event, EventType, event_id_for, read_events
from streamer.thumbnails import event_thumbnail
from tests.api.conftest import Api, error_of
from tests.conftest import PEOPLE, people_image, require
from tests.streamer.conftest import CLIP, run_worker_then_tracker
from tests.test_cli import run_vigil
from tests.test_erasure_complete import run_tracker
from vigil.config import Settings
from vigil.errors import EventError
from vigil.models.pipeline import FacePipeline
from vigil.streams import StreamEntry

pytestmark = [pytest.mark.redis, pytest.mark.slow]

OBAMA, MIRANDA = "Barack Obama", "Lin-Manuel Miranda"
PHOTOS = {OBAMA: "obama.jpg", MIRANDA: "lin-manuel-miranda.png"}
# Obama is in the audience in the clip's last two seconds (raw frames 215-274 at 29.97 fps);
# every 6th of them is 5 frames a second, what the service analyses.
OBAMA_FRAMES = (215, 275)
FRAME_STEP = 6


@dataclass
class Run:
    """The service's run over the clip with thumbnails on: its settings, Redis and events."""

    settings: Settings
    client: redis.Redis
    events: list[Event]

    def of(self, name: str) -> list[Event]:
        """Every event of the tracks that named ``name`` (their ``unknown`` events included)."""
        tracks = {event.track_id for event in self.events if event.name == name}
        return [event for event in self.events if event.track_id in tracks]


def with_thumbnails(settings: Settings, on: bool) -> Settings:
    events = settings.streamer.events.model_copy(update={"thumbnails": on})
    return settings.model_copy(update={"streamer": settings.streamer.model_copy(update={"events": events})})


def thumbnail_keys(client: redis.Redis) -> list[bytes]:
    return sorted(client.scan_iter(match="*:thumb*", count=1000))


@pytest.fixture(scope="module")
def run(settings: Settings, pipeline: FacePipeline) -> Iterator[Run]:
    with temporary_home(settings) as (home_settings, client):
        identifier = Identifier.from_settings(Gallery(client), pipeline, home_settings)
        enroll_people(identifier, home_settings, {name: require(PEOPLE / p) for name, p in PHOTOS.items()})
        config = Path(home_settings.home) / "thumbnails.yaml"
        config.write_text(json.dumps({"streamer": {"events": {"thumbnails": True}}}))  # JSON is YAML
        # when the real service runs over the clip with thumbnails on
        done = run_vigil(
            "--config", str(config), "run", str(require(CLIP)), "--as-fast-as-possible", "--json",
            "--metrics-port", "0", home=Path(home_settings.home),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        events = [
            Event.model_validate_json(line) for line in done.stdout.splitlines() if line.startswith("{")
        ]
        yield Run(with_thumbnails(home_settings, True), client, events)


def test_every_event_keeps_a_jpeg_of_its_face_expiring_with_the_events(
    run: Run, pipeline: FacePipeline
) -> None:
    # then every event has a thumbnail, a JPEG of at most 128 px a side, expiring with the events
    assert run.of(OBAMA) and run.of(MIRANDA), [(event.type, event.name) for event in run.events]
    max_age_ms = run.settings.streamer.events.max_age_s * 1000  # type: ignore[operator]
    for event in run.events:
        jpeg = event_thumbnail(run.client, run.settings, event.event_id)
        assert jpeg is not None, f"no thumbnail of {event.type} event {event.event_id}"
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and max(image.shape[:2]) <= 128, f"not a thumbnail: {jpeg[:16]!r}"
        ttl_ms = run.client.pttl(f"{run.settings.streamer.events.stream}:thumb:{event.event_id}")
        assert 0 < ttl_ms <= max_age_ms, f"thumbnail of {event.event_id} expires in {ttl_ms} ms"
    # and those of Obama's recognized and track_ended events are his face, as the models see it
    identifier = Identifier.from_settings(Gallery(run.client), pipeline, run.settings)
    for event in run.of(OBAMA):
        if event.type is EventType.UNKNOWN:
            continue  # the face before the votes named him: maybe too small to tell
        jpeg = event_thumbnail(run.client, run.settings, event.event_id)
        assert jpeg is not None
        rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        names = [found.name for found in identifier.identify(rgb)]
        assert names == [OBAMA], f"the {event.type} event's thumbnail shows {names}"
    # and a malformed id is refused before Redis is asked
    with pytest.raises(EventError):
        event_thumbnail(run.client, run.settings, "../../etc/passwd")


def test_the_api_serves_a_thumbnail_to_a_key_and_says_thumbnails_are_opt_in(run: Run) -> None:
    api = Api(run.settings, run.client)
    event = next(event for event in run.of(OBAMA) if event.type is EventType.RECOGNIZED)
    url = f"/api/v1/events/{event.event_id}/thumbnail"
    # when a read key asks for the thumbnail of Obama's event, then it gets the JPEG, cacheable privately
    served = api.http.get(url, headers=api.read_key)
    assert served.status_code == 200, served.text
    assert served.headers["content-type"] == "image/jpeg"
    assert served.headers["cache-control"] == "private, no-store"
    assert served.content == event_thumbnail(run.client, run.settings, event.event_id)
    # and without a key, nothing
    assert error_of(api.http.get(url)) == (401, "unauthorized")
    # and for an event with none: 404, naming the setting
    missing = api.http.get(f"/api/v1/events/{'0' * 32}/thumbnail", headers=api.read_key)
    assert error_of(missing) == (404, "not_found")
    assert "streamer.events.thumbnails" in missing.json()["error"]["message"]
    # and for a malformed event id: 400
    malformed = api.http.get("/api/v1/events/not-an-event/thumbnail", headers=api.read_key)
    assert error_of(malformed) == (400, "invalid_request")


def test_erasing_a_person_deletes_the_thumbnails_of_their_tracks(run: Run) -> None:
    # given thumbnails of Obama's tracks and Miranda's (the control)
    obama, miranda = run.of(OBAMA), run.of(MIRANDA)
    assert all(event_thumbnail(run.client, run.settings, e.event_id) for e in obama + miranda)
    # when Obama is erased
    erased = erase_person_named(run.settings, OBAMA, gallery=Gallery(run.client), rewrite_files=False)
    # then every thumbnail of his tracks is gone, and so is his set of them
    left = [e.event_id for e in obama if event_thumbnail(run.client, run.settings, e.event_id) is not None]
    assert left == [], f"thumbnails of Obama's events outlived him: {left}"
    assert erased.thumbnails >= len(obama), erased
    obama_id = next(e.identity_id for e in obama if e.identity_id is not None)
    assert not [key for key in thumbnail_keys(run.client) if obama_id.encode() in key]
    # while Miranda's are still there
    assert all(event_thumbnail(run.client, run.settings, e.event_id) for e in miranda)


def test_with_thumbnails_off_no_matched_face_is_cropped_nor_thumbnail_kept(
    settings: Settings, pipeline: FacePipeline
) -> None:
    frames = decode_clip(require(CLIP), OBAMA_FRAMES)[::FRAME_STEP]
    with temporary_home(settings) as (home_settings, client):
        assert not home_settings.streamer.events.thumbnails, "thumbnails are off by default"
        identifier = Identifier.from_settings(Gallery(client), pipeline, home_settings)
        enroll_people(identifier, home_settings, {OBAMA: require(PEOPLE / PHOTOS[OBAMA])})
        # given the real worker and tracker, with the default settings, on the clip's frames of Obama
        run_worker_then_tracker(client, home_settings, pipeline, frames, ("stage",), "off")
        # then Obama was recognised, from faces that travelled without an image
        events = [event for _, event in read_events(client, home_settings.streamer.events)]
        assert any(e.type is EventType.RECOGNIZED and e.name == OBAMA for e in events), events
        entries: list[StreamEntry] = client.xrange(home_settings.streamer.bus.faces_stream)  # type: ignore[assignment]
        faces = [face for _, fields in entries for face in FrameResult.from_fields(fields).faces]
        assert any(face.name == OBAMA for face in faces)
        assert [face for face in faces if face.crop_jpeg is not None] == [], "a face was cropped"
        # and no thumbnail, nor any set of them, was written
        assert thumbnail_keys(client) == []
        assert all(event_thumbnail(client, home_settings, e.event_id) is None for e in events)


def test_an_event_its_cooldown_suppressed_keeps_no_thumbnail(
    settings: Settings, pipeline: FacePipeline
) -> None:
    with temporary_home(with_thumbnails(settings, True)) as (home_settings, client):
        identifier = Identifier.from_settings(Gallery(client), pipeline, home_settings)
        enroll_people(identifier, home_settings, {OBAMA: require(PEOPLE / PHOTOS[OBAMA])})
        # given two visits of Obama to the door 5 s apart, within the cooldown: two tracks, each
        # face cropped as a worker with thumbnails on crops it
        image = people_image("obama2.jpg")
        faces = [
            FaceResult.from_identification(found, face_crop_jpeg(image, found.face.box_xyxy.tolist()))
            for found in identifier.identify(image)
        ]
        rule, start = identifier.rule(), time.time() - 20
        results = [
            FrameResult(
                "door", number, start + (5.0 if number >= 6 else 0.0) + number * 0.2, faces,
                threshold=rule.threshold, margin=rule.margin, calibration=rule.source,
                embedder_version=identifier.space_version, read_at=time.time(),
            )
            for number in range(12)
        ]  # fmt: skip
        run_tracker(client, home_settings, [*results, FrameResult("door", 12, start + 8.0, [], True)])
        # then the first visit's recognized event and both tracks' ends keep the face's JPEG
        events = {event.event_id: event for _, event in read_events(client, home_settings.streamer.events)}
        first, second = "door-erasure-1", "door-erasure-2"
        kept = [event_id_for(first, EventType.RECOGNIZED)] + [
            event_id_for(track, EventType.TRACK_ENDED) for track in (first, second)
        ]
        assert set(kept) <= set(events), [(e.type, e.track_id) for e in events.values()]
        for event_id in kept:
            assert event_thumbnail(client, home_settings, event_id) == faces[0].crop_jpeg, event_id
        # and the second visit's recognized event, suppressed by the cooldown, has none (nor is it an event)
        suppressed = event_id_for(second, EventType.RECOGNIZED)
        assert suppressed not in events
        assert event_thumbnail(client, home_settings, suppressed) is None
