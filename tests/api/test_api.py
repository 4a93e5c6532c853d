"""The HTTP API (``vigil.api``) on a real Redis with the real models, driven by FastAPI's TestClient.

Each test gets a fresh data directory with its embedded Redis (``temporary_home``), so keys,
people, events and the audit trail start empty.
"""

from __future__ import annotations

import io

import pytest
import redis
from fastapi.testclient import TestClient

from indexer.gallery import Gallery
from streamer.events import EventPublisher, EventType
from tests.api.conftest import BIDEN, OBAMA, Api, error_of
from tests.conftest import PEOPLE, require
from tests.streamer.test_events import make_event
from vigil.api.app import create_app
from vigil.api.audit import read_changes
from vigil.api.keys import KeyStore
from vigil.models.pipeline import FacePipeline


def test_health_needs_no_key_and_everything_else_does(api: Api) -> None:
    # given no key, a wrong key, and a read key
    assert api.http.get("/api/v1/health").json()["status"] == "ok"
    assert api.http.get("/api/v1/ready").json()["status"] == "ready"
    # then status is refused without a valid key and served with one
    assert error_of(api.http.get("/api/v1/status")) == (401, "unauthorized")
    assert error_of(api.http.get("/api/v1/status", headers={"X-API-Key": "vk_guess"})) == (
        401,
        "unauthorized",
    )
    status = api.http.get("/api/v1/status", headers=api.read_key)
    assert status.status_code == 200, status.text
    assert set(status.json()) >= {"sources", "workers", "bus", "gallery_version", "redis"}


def test_the_openapi_schema_documents_every_route(api: Api) -> None:
    schema = api.http.get("/api/v1/openapi.json").json()
    paths = set(schema["paths"])
    assert {"/api/v1/people", "/api/v1/people/{name}", "/api/v1/identify", "/api/v1/events"} <= paths, paths
    assert "ErrorBody" in schema["components"]["schemas"], "the error shape is documented"


def test_people_are_listed_a_page_at_a_time_with_their_models(enrolled: Api) -> None:
    # when the first page of one person is asked for
    page = enrolled.http.get("/api/v1/people", params={"limit": 1}, headers=enrolled.read_key).json()
    # then it holds the first by name, and says how many there are
    assert (page["total"], page["offset"], page["limit"]) == (2, 0, 1)
    [first] = page["items"]
    assert first["name"] == OBAMA and first["templates"] == 1
    assert list(first["templates_per_model"]) == [
        FacePipeline.from_settings(enrolled.settings).embedder.version
    ]
    second = enrolled.http.get("/api/v1/people", params={"offset": 1}, headers=enrolled.read_key).json()
    assert [person["name"] for person in second["items"]] == [BIDEN]
    # and one person shows their templates' provenance, never an embedding
    details = enrolled.http.get(f"/api/v1/people/{OBAMA}", headers=enrolled.read_key).json()
    [template] = details["template_records"]
    assert template["source"].endswith("obama.jpg") and "embedding" not in template
    assert error_of(enrolled.http.get("/api/v1/people/Nobody", headers=enrolled.read_key)) == (
        404,
        "not_found",
    )
    assert error_of(enrolled.http.get("/api/v1/people", params={"limit": 0}, headers=enrolled.read_key)) == (
        422,
        "invalid_request",
    )


def test_an_uploaded_photo_is_identified(enrolled: Api) -> None:
    # given another photo of Obama
    photo = require(PEOPLE / "obama2.jpg").read_bytes()
    # when it is uploaded
    response = enrolled.http.post(
        "/api/v1/identify", files={"image": ("obama2.jpg", photo, "image/jpeg")}, headers=enrolled.read_key
    )
    # then his face is named, with its box and score
    assert response.status_code == 200, response.text
    names = [face["name"] for face in response.json()["faces"]]
    assert OBAMA in names and BIDEN not in names, names
    named = next(face for face in response.json()["faces"] if face["name"] == OBAMA)
    assert len(named["box_xyxy"]) == 4 and named["score"] > 0


def test_a_burst_of_uploads_is_served_or_told_to_wait_and_leaves_no_queue_behind(enrolled: Api) -> None:
    from concurrent.futures import ThreadPoolExecutor

    photo = require(PEOPLE / "obama2.jpg").read_bytes()

    def upload(_: int) -> int:
        files = {"image": ("obama2.jpg", photo, "image/jpeg")}
        return enrolled.http.post("/api/v1/identify", files=files, headers=enrolled.read_key).status_code

    # when 12 uploads come at once
    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(upload, range(12)))
    # then each was identified or told the server is busy, and afterwards one is served at once
    assert set(statuses) <= {200, 503} and 200 in statuses, statuses
    assert upload(0) == 200, "the queue of waiting uploads did not drain"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"this is not an image", (400, "invalid_image")),  # refused before any model runs
        (b"", (400, "invalid_image")),  # an empty upload
        (b"\xff" * 2_000_001, (413, "too_large")),  # over api.max_upload_bytes (set to 2 MB here)
    ],
)
def test_bad_uploads_get_one_error_each(api: Api, content: bytes, expected: tuple[int, str]) -> None:
    settings = api.settings.model_copy(
        update={"api": api.settings.api.model_copy(update={"max_upload_bytes": 2_000_000})}
    )
    http = TestClient(create_app(settings, api.redis))
    response = http.post(
        "/api/v1/identify",
        files={"image": ("x.jpg", io.BytesIO(content), "image/jpeg")},
        headers=api.read_key,
    )
    assert error_of(response) == expected


def test_uploads_are_bounded_before_they_are_read(api: Api) -> None:
    settings = api.settings.model_copy(
        update={"api": api.settings.api.model_copy(update={"max_upload_bytes": 2_000_000})}
    )
    http = TestClient(create_app(settings, api.redis))
    big = b"\xff" * 3_000_000
    # a stranger's upload is refused for the key, whatever its size
    stranger = http.post("/api/v1/identify", files={"image": ("x.jpg", big, "image/jpeg")})
    assert error_of(stranger) == (401, "unauthorized")
    # a body streamed without a length is cut off once it passes the limit
    chunks = (b"\xff" * 100_000 for _ in range(30))
    streamed = http.post(
        "/api/v1/identify",
        content=chunks,
        headers={**api.read_key, "Content-Type": "multipart/form-data; boundary=x"},
    )
    assert error_of(streamed) == (413, "too_large")


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("get", "/api/v1/nothing-here", (404, "not_found")),  # an unknown route, with a key
        ("put", "/api/v1/people", (405, "method_not_allowed")),  # a known route, wrong method
    ],
)
def test_routing_errors_have_the_error_shape(
    api: Api, method: str, path: str, expected: tuple[int, str]
) -> None:
    assert error_of(getattr(api.http, method)(path, headers=api.read_key)) == expected


def test_only_an_admin_erases_and_the_change_is_audited(enrolled: Api) -> None:
    # given Biden enrolled; when a read-only key tries to delete him, then it is forbidden
    refused = enrolled.http.delete(f"/api/v1/people/{BIDEN}", headers=enrolled.read_key)
    assert error_of(refused) == (403, "forbidden")
    assert Gallery(enrolled.redis).find_by_name(BIDEN) is not None
    # when an admin key deletes him
    erased = enrolled.http.delete(f"/api/v1/people/{BIDEN}", headers=enrolled.admin_key)
    # then he is erased, the change is audited with the key's name, and the trail holds no name
    assert erased.status_code == 200, erased.text
    assert erased.json()["name"] == BIDEN and erased.json()["templates"] == 1
    assert Gallery(enrolled.redis).find_by_name(BIDEN) is None
    [change] = read_changes(enrolled.redis)
    assert (change.who, change.action) == ("operator", "people.delete")
    assert BIDEN not in change.target
    assert error_of(enrolled.http.delete(f"/api/v1/people/{BIDEN}", headers=enrolled.admin_key)) == (
        404,
        "not_found",
    )


def test_events_are_read_a_page_at_a_time(api: Api) -> None:
    # given three events on two cameras
    publisher = EventPublisher(api.redis, api.settings.streamer.events)
    for frame, camera in enumerate(["door", "hall", "door"]):
        publisher.publish(make_event(camera=camera, frame=frame, kind=EventType.RECOGNIZED))
    # when read two at a time, then the pages join up with nothing repeated or skipped
    first = api.http.get("/api/v1/events", params={"limit": 2}, headers=api.read_key).json()
    assert [event["frame"] for event in first["items"]] == [0, 1] and first["next"] is not None
    rest = api.http.get(
        "/api/v1/events", params={"limit": 2, "since": first["next"]}, headers=api.read_key
    ).json()
    assert [event["frame"] for event in rest["items"]] == [2] and rest["next"] is None
    # and filtered by camera
    door = api.http.get("/api/v1/events", params={"camera": "door"}, headers=api.read_key).json()
    assert [event["camera"] for event in door["items"]] == ["door", "door"]
    for since in ("yesterday", "99999999999999999999999-0", "1-99999999999999999999", "0001-01-01T00:00:00Z"):
        bad = api.http.get("/api/v1/events", params={"since": since}, headers=api.read_key)
        if since.startswith("0001"):  # before 1970: from the start, not an error
            assert bad.status_code == 200 and len(bad.json()["items"]) == 3, bad.text
        else:
            assert error_of(bad) == (400, "invalid_request"), since


def test_revoked_keys_stop_working_at_once(api: Api) -> None:
    keys = KeyStore(api.redis)
    assert api.http.get("/api/v1/people", headers=api.read_key).status_code == 200
    assert keys.revoke("dashboard")
    assert error_of(api.http.get("/api/v1/people", headers=api.read_key)) == (401, "unauthorized")
    # and only digests of tokens are stored
    token = api.admin_key["X-API-Key"].encode()
    assert not [key for key in api.redis.scan_iter() if token in b"".join(_values(api.redis, key))]


def _values(client: redis.Redis, key: bytes) -> list[bytes]:
    kind = client.type(key)
    if kind == b"hash":
        return [item for pair in client.hgetall(key).items() for item in pair]
    if kind == b"string":
        return [client.get(key) or b""]
    return [key]


def test_a_person_is_enrolled_from_uploads_with_a_reason_for_each_refused_photo(api: Api) -> None:
    good = require(PEOPLE / "obama.jpg").read_bytes()
    photos = [
        ("photos", ("obama.jpg", good, "image/jpeg")),
        ("photos", ("notes.jpg", b"not a photo", "image/jpeg")),
    ]
    # when an admin enrols Obama from a good photo and a bad one
    created = api.http.post("/api/v1/people", data={"name": OBAMA}, files=photos, headers=api.admin_key)
    # then he is enrolled from the good one, and the bad one is refused with its reason
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["person"]["name"] == OBAMA and body["person"]["templates"] == 1
    assert body["accepted"] == ["obama.jpg"]
    [refused] = body["rejected"]
    assert refused["photo"] == "notes.jpg" and refused["reason"]
    # and the change is audited under the key, naming him by id only
    [change] = read_changes(api.redis)
    assert (change.who, change.action, change.target) == (
        "operator",
        "people.create",
        body["person"]["identity_id"],
    )
    # the same name again is a conflict; a read key may not enrol
    again = api.http.post("/api/v1/people", data={"name": OBAMA}, files=photos[:1], headers=api.admin_key)
    assert error_of(again) == (409, "gallery_conflict")
    reader = api.http.post("/api/v1/people", data={"name": "Ada"}, files=photos[:1], headers=api.read_key)
    assert error_of(reader) == (403, "forbidden")


def test_an_enrolment_without_a_usable_face_says_why_for_each_photo(api: Api) -> None:
    photos = [
        ("photos", ("a.jpg", b"not a photo", "image/jpeg")),
        ("photos", ("b.png", b"nor this", "image/png")),
    ]
    refused = api.http.post("/api/v1/people", data={"name": "Nobody"}, files=photos, headers=api.admin_key)
    assert error_of(refused) == (422, "no_usable_face")
    message = refused.json()["error"]["message"]
    assert "a.jpg" in message and "b.png" in message, message
    assert Gallery(api.redis).find_by_name("Nobody") is None, "nothing is written"


def test_photos_are_added_and_people_renamed_and_an_erasure_takes_their_audit_entries(enrolled: Api) -> None:
    photo = require(PEOPLE / "obama2.jpg").read_bytes()
    files = [("photos", ("obama2.jpg", photo, "image/jpeg"))]
    # when a photo is added to Obama, and Biden is renamed
    added = enrolled.http.post(f"/api/v1/people/{OBAMA}/photos", files=files, headers=enrolled.admin_key)
    assert added.status_code == 200, added.text
    assert added.json()["person"]["templates"] == 2 and added.json()["accepted"] == ["obama2.jpg"]
    renamed = enrolled.http.patch(
        f"/api/v1/people/{BIDEN}", json={"name": "Joseph Biden"}, headers=enrolled.admin_key
    )
    assert renamed.status_code == 200 and renamed.json()["name"] == "Joseph Biden", renamed.text
    # then the old name is gone, a taken name is refused, and unknown people are 404
    assert error_of(enrolled.http.get(f"/api/v1/people/{BIDEN}", headers=enrolled.read_key)) == (
        404,
        "not_found",
    )
    taken = enrolled.http.patch(
        "/api/v1/people/Joseph Biden", json={"name": OBAMA}, headers=enrolled.admin_key
    )
    assert error_of(taken) == (409, "gallery_conflict")
    missing = enrolled.http.post("/api/v1/people/Nobody/photos", files=files, headers=enrolled.admin_key)
    assert error_of(missing) == (404, "not_found")
    # when Obama is erased, then the audit trail keeps that a person was erased, and nothing of his id
    obama_id = added.json()["person"]["identity_id"]
    assert enrolled.http.delete(f"/api/v1/people/{OBAMA}", headers=enrolled.admin_key).status_code == 200
    changes = read_changes(enrolled.redis)
    assert [change.action for change in changes] == ["people.delete", "people.rename"]
    assert all(obama_id not in change.target for change in changes)


def test_an_uploaded_photo_is_analysed_and_detected(enrolled: Api) -> None:
    photo = require(PEOPLE / "obama2.jpg").read_bytes()
    files = {"image": ("obama2.jpg", photo, "image/jpeg")}
    # when analysed, then his face has a name, an adult's age and a gender with its confidence
    analysed = enrolled.http.post("/api/v1/analyze", files=files, headers=enrolled.read_key)
    assert analysed.status_code == 200, analysed.text
    face = next(face for face in analysed.json()["faces"] if face["name"] == OBAMA)
    assert 25 <= face["age"] <= 80 and face["age_range"][0] <= face["age"] <= face["age_range"][1], face
    assert face["gender"] in {"female", "male"} and 0.5 <= face["gender_confidence"] <= 1.0, face
    # when detected, then the faces have boxes, scores and five landmarks, and no identity
    detected = enrolled.http.post("/api/v1/detect", files=files, headers=enrolled.read_key)
    assert detected.status_code == 200, detected.text
    faces = detected.json()["faces"]
    assert len(faces) == len(analysed.json()["faces"])
    assert all(len(face["landmarks"]) == 5 and "name" not in face for face in faces)
    # and a bad upload is refused alike on both
    for route in ("analyze", "detect"):
        bad = enrolled.http.post(
            f"/api/v1/{route}", files={"image": ("x.jpg", b"junk", "image/jpeg")}, headers=enrolled.read_key
        )
        assert error_of(bad) == (400, "invalid_image"), route
