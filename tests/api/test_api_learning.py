"""Unknown clusters, feedback and a person's history over HTTP (``vigil.api.routes.learning``).

Real photos go through the real tracker (and, for kept face images, the real bus and worker)
as in ``tests/streamer/test_learning.py``, whose helpers make the visits here; the API then
reads and changes what they left in the test's embedded Redis, and the CLI is run against the
same server where its output must match.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from indexer.enroll import enroll_person
from indexer.gallery import Gallery
from indexer.identify import Identifier
from indexer.unknowns import UnknownStore
from streamer.events import EventType
from tests.api.conftest import OBAMA, Api, error_of
from tests.conftest import PEOPLE, require
from tests.streamer.test_learning import lfw_photo, run_tracker, run_worker, stream_settings, visit_results
from tests.test_cli import run_vigil
from vigil.api.audit import read_changes
from vigil.image import decode_image, load_image
from vigil.models.pipeline import FacePipeline

pytestmark = [pytest.mark.redis, pytest.mark.slow]

NO_SUCH_EVENT = "0123456789abcdef0123456789abcdef"


def correction(event_id: str = NO_SUCH_EVENT, verdict: str = "not", name: str = OBAMA) -> dict[str, str]:
    """A ``POST /api/v1/feedback`` body."""
    return {"event_id": event_id, "verdict": verdict, "name": name}


def test_unknown_visits_are_clustered_listed_enrolled_and_then_identified(
    api: Api, pipeline: FacePipeline
) -> None:
    http, read, admin = api.http, api.read_key, api.admin_key
    config = stream_settings(api.settings)
    gallery = Gallery(api.redis)
    identifier = Identifier.from_settings(gallery, pipeline, config)
    # given three visits each of two strangers, kept without images (the default)
    chavez = [lfw_photo("Hugo_Chavez", n) for n in (1, 2, 3)]
    serena = [lfw_photo("Serena_Williams", n) for n in (1, 2, 3)]
    events = run_tracker(api.redis, config, gallery, visit_results(identifier, chavez + serena))
    unknown = [event.event_id for event in events if event.type is EventType.UNKNOWN]
    assert len(unknown) == 6, [event.type for event in events]
    assert http.get("/api/v1/unknowns", headers=read).json() == {"items": []}, "nothing clustered yet"
    # when a read key asks for clustering, then it is refused and nothing is clustered
    assert error_of(http.post("/api/v1/unknowns/cluster", headers=read)) == (403, "forbidden")
    assert http.get("/api/v1/unknowns", headers=read).json() == {"items": []}
    # when an admin clusters them
    clustered = http.post("/api/v1/unknowns/cluster", headers=admin)
    assert clustered.status_code == 200, clustered.text
    body = clustered.json()
    # then each cluster is one person's three visits, without a face image
    assert body["tracks"] == 6 and 0 < body["threshold"] < 1, body
    # (a cluster's events are its tracks' `unknown` and `track_ended` events)
    by_events = {frozenset(item["event_ids"]) & set(unknown): item for item in body["items"]}
    assert set(by_events) == {frozenset(unknown[:3]), frozenset(unknown[3:])}, body["items"]
    assert all(item["images"] == 0 and item["face_url"] is None for item in body["items"])
    # and the listing is the CLI's, row for row, plus the face URL
    listed = http.get("/api/v1/unknowns", headers=read).json()["items"]
    assert listed == body["items"]
    cli = run_vigil("unknowns", "list", "--json", home=api.settings.home)
    assert cli.returncode == 0, cli.stderr
    assert [json.loads(line) for line in cli.stdout.splitlines()] == [
        {k: v for k, v in item.items() if k != "face_url"} for item in listed
    ]
    chavez_row, serena_row = by_events[frozenset(unknown[:3])], by_events[frozenset(unknown[3:])]
    # when their face is asked for, then there is none to show (keep_images is opt-in)
    assert error_of(http.get(f"/api/v1/unknowns/{chavez_row['cluster']}/face", headers=read)) == (
        404,
        "not_found",
    )
    # when a read key tries to enrol Chávez's cluster, then it is refused
    enrol = f"/api/v1/unknowns/{chavez_row['cluster']}/enrol"
    assert error_of(http.post(enrol, json={"name": "Hugo Chavez"}, headers=read)) == (403, "forbidden")
    # when an admin enrols it
    enrolled = http.post(enrol, json={"name": "Hugo Chavez"}, headers=admin)
    assert enrolled.status_code == 200, enrolled.text
    person = enrolled.json()["person"]
    # then he is a person with every kept embedding as a template, audited under his identity id
    assert person["name"] == "Hugo Chavez" and enrolled.json()["templates"] == chavez_row["embeddings"]
    assert person["templates"] == chavez_row["embeddings"] == sum(person["templates_per_model"].values())
    change = read_changes(api.redis)[0]
    assert (change.who, change.action, change.target) == ("operator", "unknowns.enrol", person["identity_id"])
    # and his next visit (a photo not seen before) is identified over HTTP
    photo = lfw_photo("Hugo_Chavez", 4).read_bytes()
    found = http.post("/api/v1/identify", files={"image": ("chavez.jpg", photo, "image/jpeg")}, headers=read)
    assert [face["name"] for face in found.json()["faces"]] == ["Hugo Chavez"], found.text
    # and the cluster says whom it became
    rows = {item["cluster"]: item for item in http.get("/api/v1/unknowns", headers=read).json()["items"]}
    assert rows[chavez_row["cluster"]]["enrolled_as"] == person["identity_id"]
    # when it is enrolled again, or Serena's cluster under his (taken) name, then both are conflicts
    assert error_of(http.post(enrol, json={"name": "Hugo Chavez"}, headers=admin)) == (
        409,
        "gallery_conflict",
    )
    serena_enrol = f"/api/v1/unknowns/{serena_row['cluster']}/enrol"
    assert error_of(http.post(serena_enrol, json={"name": "Hugo Chavez"}, headers=admin)) == (
        409,
        "gallery_conflict",
    )
    assert [identity.name for identity in gallery.list_identities()] == ["Hugo Chavez"]
    # when a read key tries to forget Serena's cluster, then it is refused
    forget = f"/api/v1/unknowns/{serena_row['cluster']}"
    assert error_of(http.delete(forget, headers=read)) == (403, "forbidden")
    # when an admin forgets it, then her tracks are gone, the change audited by cluster number
    forgotten = http.delete(forget, headers=admin)
    assert forgotten.json() == {"cluster": serena_row["cluster"], "tracks": 3}, forgotten.text
    change = read_changes(api.redis)[0]
    assert (change.action, change.target) == ("unknowns.forget", str(serena_row["cluster"]))
    remaining = http.get("/api/v1/unknowns", headers=read).json()["items"]
    assert [item["cluster"] for item in remaining] == [chavez_row["cluster"]]
    assert UnknownStore(gallery, 60.0).entries() == [], "Chávez's were consumed, Serena's forgotten"
    assert error_of(http.delete(forget, headers=admin)) == (404, "not_found")


def test_an_opted_in_clusters_face_is_served_as_a_private_jpeg(api: Api, pipeline: FacePipeline) -> None:
    http, read = api.http, api.read_key
    config = stream_settings(api.settings, {"unknowns": {"keep_images": True}})
    # given two visits of a stranger through the real bus, worker and tracker, with images opted in
    run_worker(api.redis, config, pipeline, [lfw_photo("Serena_Williams", n) for n in (1, 2)])
    store = UnknownStore(Gallery(api.redis), config.indexer.unknowns.retention_s)
    kept = store.entries()
    images = store.images([sighting.entry_id for sighting in kept])
    assert len(images) == 2, "each visit keeps its best face"
    # when they are clustered and listed
    assert http.post("/api/v1/unknowns/cluster", headers=api.admin_key).status_code == 200
    (row,) = http.get("/api/v1/unknowns", headers=read).json()["items"]
    # then the cluster counts its images and links its face
    assert row["images"] == 2 and row["face_url"] == f"/api/v1/unknowns/{row['cluster']}/face", row
    # when the face is fetched without a key, then it is refused
    assert error_of(http.get(row["face_url"])) == (401, "unauthorized")
    # when it is fetched with a read key
    face = http.get(row["face_url"], headers=read)
    # then it is the kept JPEG of the best face (highest quality), not to be cached
    assert face.status_code == 200, face.text
    assert face.headers["content-type"] == "image/jpeg"
    assert face.headers["cache-control"] == "private, no-store"
    best = max(kept, key=lambda sighting: sighting.qualities[0])
    assert face.content == images[best.entry_id]
    assert pipeline.analyze([decode_image(face.content, "face.jpg")])[0], "it shows a face"
    # when the cluster is forgotten, then its face is gone too
    assert http.delete(f"/api/v1/unknowns/{row['cluster']}", headers=api.admin_key).status_code == 200
    assert error_of(http.get(row["face_url"], headers=read)) == (404, "not_found")


def test_feedback_not_makes_a_hard_negative_and_undoing_it_over_http_restores_the_match(
    api: Api, pipeline: FacePipeline
) -> None:
    http, admin = api.http, api.admin_key
    # given a permissive rule (SFace scores Biden 0.08 against Obama), so Biden is taken for Obama
    config = stream_settings(api.settings, {"match_threshold": 0.0, "match_margin": 0.03})
    gallery = Gallery(api.redis)
    identifier = Identifier.from_settings(gallery, pipeline, config)
    enroll_person(identifier, config.indexer, OBAMA, [require(PEOPLE / "obama.jpg")])
    biden = require(PEOPLE / "biden.jpg")
    events = run_tracker(api.redis, config, gallery, visit_results(identifier, [biden]))
    (wrong,) = [event for event in events if event.type is EventType.RECOGNIZED]
    assert wrong.name == OBAMA, "the false match to correct"
    not_obama = correction(wrong.event_id, "not")
    # when a read key, or no key, sends the correction, then it is refused
    assert error_of(http.post("/api/v1/feedback", json=not_obama, headers=api.read_key)) == (403, "forbidden")
    assert error_of(http.post("/api/v1/feedback", json=not_obama)) == (401, "unauthorized")
    assert Gallery(api.redis).history(gallery.get_by_name(OBAMA).identity_id)[-1].item == "template"
    # when an admin says that face is not Obama
    corrected = http.post("/api/v1/feedback", json=not_obama, headers=admin)
    assert corrected.status_code == 200, corrected.text
    body = corrected.json()
    obama = gallery.get_by_name(OBAMA).identity_id
    # then it became a hard negative of his, audited under his identity id
    assert (body["item"], body["verdict"], body["identity_id"], body["event_id"]) == (
        "negative",
        "not",
        obama,
        wrong.event_id,
    )
    change = read_changes(api.redis)[0]
    assert (change.action, change.target) == ("feedback.not", obama)
    # and the same face is no longer taken for him
    assert [r.name for r in identifier.identify(load_image(biden))] == [None]
    # when his history is read, then the negative is its last entry, from this event
    listed = http.get(f"/api/v1/people/{OBAMA}/history", headers=api.read_key)
    assert listed.status_code == 200, listed.text
    entries = listed.json()["items"]
    assert [(e["entry"], e["action"], e["item"], e["origin"]) for e in entries] == [
        (1, "added", "template", "enrol"),
        (2, "added", "negative", "feedback"),
    ]
    assert (entries[1]["item_id"], entries[1]["event_id"]) == (body["item_id"], wrong.event_id)
    # and it matches the CLI's, entry for entry
    cli = run_vigil("people", "history", OBAMA, "--json", home=api.settings.home)
    assert [json.loads(line) for line in cli.stdout.splitlines()] == entries, cli.stderr
    # when a read key tries to undo it, then it is refused
    undo = f"/api/v1/people/{OBAMA}/history/2/undo"
    assert error_of(http.post(undo, headers=api.read_key)) == (403, "forbidden")
    # when an admin undoes it
    undone = http.post(undo, headers=admin)
    assert undone.status_code == 200, undone.text
    # then the negative is gone (Biden is taken for Obama again under this rule), audited
    assert (undone.json()["entry"], undone.json()["item"]) == (2, "negative")
    assert [r.name for r in identifier.identify(load_image(biden))] == [OBAMA]
    assert (read_changes(api.redis)[0].action, read_changes(api.redis)[0].target) == (
        "people.history.undo",
        obama,
    )
    history = http.get(f"/api/v1/people/{OBAMA}/history", headers=api.read_key).json()["items"]
    assert (history[-1]["action"], history[-1]["origin"], history[-1]["note"]) == (
        "removed",
        "undo",
        "undoes entry 2",
    )
    # when it is undone again, or a removal is undone, then both are conflicts
    assert error_of(http.post(undo, headers=admin)) == (409, "gallery_conflict")
    assert error_of(http.post(f"/api/v1/people/{OBAMA}/history/3/undo", headers=admin)) == (
        409,
        "gallery_conflict",
    )


def test_feedback_is_makes_an_unknown_face_a_template(api: Api, pipeline: FacePipeline) -> None:
    # given Obama enrolled, but a rule so strict (0.99) that his other photo is unknown
    config = stream_settings(api.settings, {"match_threshold": 0.99, "match_margin": 0.0})
    gallery = Gallery(api.redis)
    identifier = Identifier.from_settings(gallery, pipeline, config)
    enroll_person(identifier, config.indexer, OBAMA, [require(PEOPLE / "obama.jpg")])
    probe = require(PEOPLE / "obama2.jpg")
    events = run_tracker(api.redis, config, gallery, visit_results(identifier, [probe]))
    (unknown,) = [event for event in events if event.type is EventType.UNKNOWN]
    # when an admin says the unknown face is Obama (the id as a user might paste it: upper case)
    is_obama = correction(unknown.event_id.upper(), "is")
    corrected = api.http.post("/api/v1/feedback", json=is_obama, headers=api.admin_key)
    assert corrected.status_code == 200, corrected.text
    # then it is a template of his (from feedback), and the same face is named now
    obama = gallery.get_by_name(OBAMA).identity_id
    assert corrected.json()["item"] == "template" and corrected.json()["event_id"] == unknown.event_id
    templates = {t.template_id: t.origin for t in gallery.identity_templates(obama)}
    assert templates[corrected.json()["item_id"]] == "feedback" and sorted(templates.values()) == [
        "enrol",
        "feedback",
    ]
    assert [r.name for r in identifier.identify(load_image(probe))] == [OBAMA]
    assert read_changes(api.redis)[0].target == obama
    # and the unknown entry became the template: it is no longer kept as unknown
    assert UnknownStore(gallery, 60.0).entry_for_event(unknown.event_id) is None


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        # a cluster id that is not a number
        ("get", "/api/v1/unknowns/first/face", None, (400, "invalid_request")),
        # a negative cluster id
        ("post", "/api/v1/unknowns/-1/enrol", {"name": "Zoe"}, (400, "invalid_request")),
        # a cluster id too long to be one
        ("delete", "/api/v1/unknowns/" + "9" * 40, None, (400, "invalid_request")),
        # a cluster never made
        ("get", "/api/v1/unknowns/99/face", None, (404, "not_found")),
        ("post", "/api/v1/unknowns/99/enrol", {"name": "Zoe"}, (404, "not_found")),
        ("delete", "/api/v1/unknowns/99", None, (404, "not_found")),
        # enrolling under no name
        ("post", "/api/v1/unknowns/99/enrol", {"name": ""}, (422, "invalid_request")),
        # an event id that is not one
        ("post", "/api/v1/feedback", correction("event-7"), (400, "invalid_request")),
        # a well-formed id of an event that does not exist
        ("post", "/api/v1/feedback", correction(verdict="is"), (404, "not_found")),
        # correcting towards someone not enrolled
        ("post", "/api/v1/feedback", correction(name="Nobody"), (404, "not_found")),
        # a verdict that is neither is nor not
        ("post", "/api/v1/feedback", correction(verdict="maybe"), (422, "invalid_request")),
        # the history of someone not enrolled
        ("get", "/api/v1/people/Nobody/history", None, (404, "not_found")),
        # undoing an entry that does not exist, or is not a number
        ("post", f"/api/v1/people/{OBAMA}/history/5/undo", None, (404, "not_found")),
        ("post", f"/api/v1/people/{OBAMA}/history/0/undo", None, (404, "not_found")),
        ("post", f"/api/v1/people/{OBAMA}/history/first/undo", None, (422, "invalid_request")),
        ("post", "/api/v1/people/Nobody/history/1/undo", None, (404, "not_found")),
    ],
    ids=[
        "cluster-not-a-number",
        "cluster-negative",
        "cluster-too-long",
        "face-of-no-cluster",
        "enrol-no-cluster",
        "forget-no-cluster",
        "enrol-empty-name",
        "malformed-event",
        "unknown-event",
        "feedback-unknown-name",
        "feedback-bad-verdict",
        "history-unknown-name",
        "undo-missing-entry",
        "undo-entry-zero",
        "undo-entry-not-a-number",
        "undo-unknown-name",
    ],
)
def test_bad_ids_get_a_client_error_and_change_nothing(
    enrolled: Api, method: str, path: str, body: dict[str, Any] | None, expected: tuple[int, str]
) -> None:
    # given Obama and Biden enrolled and nothing else; when the request names what is not there
    kwargs: dict[str, Any] = {"headers": enrolled.admin_key} | ({"json": body} if body is not None else {})
    response = enrolled.http.request(method.upper(), path, **kwargs)
    # then it gets the error, in the one shape, and nothing was changed or audited
    assert error_of(response) == expected, response.text
    assert read_changes(enrolled.redis) == []
    obama = Gallery(enrolled.redis).get_by_name(OBAMA)
    assert len(Gallery(enrolled.redis).history(obama.identity_id)) == 1


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/v1/unknowns", None),
        ("post", "/api/v1/unknowns/cluster", None),
        ("get", "/api/v1/unknowns/1/face", None),
        ("post", "/api/v1/unknowns/1/enrol", {"name": "Zoe"}),
        ("delete", "/api/v1/unknowns/1", None),
        ("post", "/api/v1/feedback", correction()),
        ("get", f"/api/v1/people/{OBAMA}/history", None),
        ("post", f"/api/v1/people/{OBAMA}/history/1/undo", None),
    ],
    ids=["list", "cluster", "face", "enrol", "forget", "feedback", "history", "undo"],
)
def test_every_route_needs_a_key_and_changes_need_an_admin_one(
    api: Api, method: str, path: str, body: dict[str, Any] | None
) -> None:
    kwargs: dict[str, Any] = {"json": body} if body is not None else {}
    # when there is no key, then every route refuses
    assert error_of(api.http.request(method.upper(), path, **kwargs)) == (401, "unauthorized")
    # when a read key asks for a change, then it is forbidden (reads pass the key check)
    answer = api.http.request(method.upper(), path, headers=api.read_key, **kwargs)
    if method == "get":
        assert answer.status_code in (200, 404), answer.text
    else:
        assert error_of(answer) == (403, "forbidden")
    assert read_changes(api.redis) == [], "nothing refused is audited"
