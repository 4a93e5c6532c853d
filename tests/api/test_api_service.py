"""The API's cameras, models (artifacts and the rule in force) and gallery backup routes, on real Redis."""

from __future__ import annotations

import json

from indexer.calibration import shipped_calibration_path
from streamer.feed import SourceStatus
from streamer.reader import SourceState
from tests.api.conftest import BIDEN, OBAMA, Api, error_of
from tests.conftest import PEOPLE, require
from vigil.artifacts import ArtifactRegistry
from vigil.models.pipeline import FacePipeline


def test_cameras_show_each_sources_state_rate_and_last_error(api: Api) -> None:
    # given two cameras reporting as the service's readers do: one live, one failing
    door = SourceStatus("door")
    door.client = api.redis
    door.update(SourceState.LIVE, "")
    for _ in range(3):
        door.count_frame()
    door.save()
    yard = SourceStatus("yard")
    yard.client = api.redis
    yard.update(SourceState.BACKING_OFF, "rtsp://yard: connection refused")
    # when the cameras are read
    response = api.http.get("/api/v1/cameras", headers=api.read_key)
    assert response.status_code == 200, response.text
    cameras = {camera["name"]: camera for camera in response.json()["items"]}
    # then each has its state, frames, rate and last error
    assert cameras["door"]["state"] == "live" and cameras["door"]["frames"] == 3
    assert cameras["door"]["fps"] > 0
    assert cameras["yard"]["state"] == "backing-off" and "refused" in cameras["yard"]["reason"]
    assert cameras["yard"]["fps"] is None
    assert response.json()["bus_waiting"] == 0
    assert error_of(api.http.get("/api/v1/cameras")) == (401, "unauthorized")


def test_models_are_listed_promoted_and_rolled_back_and_the_rule_follows(api: Api) -> None:
    # given a calibration stored for the embedder in force, not yet promoted
    space = FacePipeline.from_settings(api.settings).embedder.version
    raw = json.loads(shipped_calibration_path(space).read_text(encoding="utf-8"))
    raw["calibration_id"] = "from-the-api-test"
    version = (
        ArtifactRegistry(api.settings.home)
        .add(
            "calibration",
            {"calibration.json": json.dumps(raw).encode()},
            embedder_version=space,
            metrics={"far": 0.001},
            data={"dataset": "test"},
        )
        .version
    )
    listed = api.http.get("/api/v1/models", headers=api.read_key).json()
    assert [(item["version"], item["in_force"]) for item in listed["items"]] == [(version, False)]
    assert "from-the-api-test" not in listed["operating_point"]["source"]
    # a read key may not promote; an unknown version is 404
    assert error_of(api.http.post(f"/api/v1/models/{version}/promote", headers=api.read_key)) == (
        403,
        "forbidden",
    )
    missing = api.http.post("/api/v1/models/calibration-20990101T000000-0000/promote", headers=api.admin_key)
    assert error_of(missing) == (404, "not_found")
    # when an admin promotes it, it is in force and the rule comes from it
    promoted = api.http.post(f"/api/v1/models/{version}/promote", headers=api.admin_key)
    assert promoted.json() == {"kind": "calibration", "in_force": version}
    listed = api.http.get("/api/v1/models", headers=api.read_key).json()
    assert listed["items"][0]["in_force"] and "from-the-api-test" in listed["operating_point"]["source"]
    # when rolled back, the shipped calibration applies again
    rolled = api.http.post("/api/v1/models/calibration/rollback", headers=api.admin_key)
    assert rolled.json() == {"kind": "calibration", "in_force": None}
    listed = api.http.get("/api/v1/models", headers=api.read_key).json()
    assert "from-the-api-test" not in listed["operating_point"]["source"]
    assert error_of(api.http.post("/api/v1/models/everything/rollback", headers=api.admin_key))[0] == 422


def test_the_gallery_is_exported_and_imported_whole_by_an_admin(enrolled: Api) -> None:
    api = enrolled
    assert error_of(api.http.get("/api/v1/gallery/export", headers=api.read_key)) == (403, "forbidden")
    exported = api.http.get("/api/v1/gallery/export", headers=api.admin_key)
    assert exported.status_code == 200 and "attachment" in exported.headers["content-disposition"]
    assert len(exported.content.splitlines()) == 3  # a header and two people
    # when Obama is erased and the export imported again, all or nothing:
    assert api.http.delete(f"/api/v1/people/{OBAMA}", headers=api.admin_key).status_code == 200
    upload = {"file": ("backup.jsonl", exported.content, "application/x-ndjson")}
    refused = api.http.post("/api/v1/gallery/import", files=upload, headers=api.admin_key)
    # Biden is still enrolled, so nothing is imported, and the message names the uploaded file
    assert error_of(refused) == (409, "gallery_conflict")
    assert "backup.jsonl" in refused.json()["error"]["message"] and "/tmp" not in refused.text
    assert api.http.get(f"/api/v1/people/{OBAMA}", headers=api.read_key).status_code == 404
    # when Biden is erased too, the import restores both, and Obama is identified again
    assert api.http.delete(f"/api/v1/people/{BIDEN}", headers=api.admin_key).status_code == 200
    restored = api.http.post("/api/v1/gallery/import", files=upload, headers=api.admin_key)
    assert restored.status_code == 200, restored.text
    assert restored.json()["people"] == 2
    photo = require(PEOPLE / "obama.jpg").read_bytes()
    identified = api.http.post(
        "/api/v1/identify", files={"image": ("o.jpg", photo, "image/jpeg")}, headers=api.read_key
    )
    assert [face["name"] for face in identified.json()["faces"]] == [OBAMA]
    # a file that is not an export is one error
    junk = {"file": ("notes.txt", b"hello\n", "text/plain")}
    assert error_of(api.http.post("/api/v1/gallery/import", files=junk, headers=api.admin_key))[0] in (
        400,
        409,
    )
