"""The CompreFace-shaped recognition API (Double Take, Viseron), on real Redis and models."""

from __future__ import annotations

import pytest

from tests.api.conftest import BIDEN, OBAMA, Api, error_of
from tests.conftest import PEOPLE, require
from vigil.api.routes.compreface import similarity

MIRANDA = "Lin-Manuel Miranda"


@pytest.mark.parametrize(
    ("score", "threshold", "expected"),
    [(0.3, 0.3, 0.5), (1.0, 0.3, 1.0), (-1.0, 0.3, 0.0), (0.65, 0.3, 0.75), (float("nan"), 0.3, 0.0)],
)
def test_similarity_puts_the_calibrated_threshold_at_one_half(
    score: float, threshold: float, expected: float
) -> None:
    assert similarity(score, threshold) == pytest.approx(expected)
    assert similarity(threshold - 0.01, threshold) < 0.5 <= similarity(threshold, threshold)


def photo(name: str) -> tuple[str, bytes, str]:
    return (name, require(PEOPLE / name).read_bytes(), "image/jpeg")


def test_a_compreface_client_adds_recognizes_renames_and_deletes_subjects(enrolled: Api) -> None:
    api = enrolled
    key = {"x-api-key": api.admin_key["X-API-Key"]}  # CompreFace clients send it in lower case
    # recognize: Obama is named above the line, with CompreFace's box
    answer = api.http.post("/api/v1/recognition/recognize", files={"file": photo("obama.jpg")}, headers=key)
    assert answer.status_code == 200, answer.text
    (face,) = answer.json()["result"]
    assert face["subjects"][0]["subject"] == OBAMA and face["subjects"][0]["similarity"] >= 0.5
    assert set(face["box"]) == {"probability", "x_min", "y_min", "x_max", "y_max"}
    # a stranger's best subject stays below the line
    miranda = photo("lin-manuel-miranda.png")
    stranger = api.http.post("/api/v1/recognition/recognize", files={"file": miranda}, headers=key).json()
    assert all(s["similarity"] < 0.5 for s in stranger["result"][0]["subjects"])
    # when a face is added for a new subject, they are enrolled and recognized
    added = api.http.post(
        "/api/v1/recognition/faces", params={"subject": MIRANDA}, files={"file": miranda}, headers=key
    )
    assert added.status_code == 201, added.text
    assert added.json()["subject"] == MIRANDA and added.json()["image_id"]
    again = api.http.post("/api/v1/recognition/recognize", files={"file": miranda}, headers=key).json()
    assert again["result"][0]["subjects"][0]["subject"] == MIRANDA
    assert again["result"][0]["subjects"][0]["similarity"] >= 0.5
    listed = api.http.get("/api/v1/recognition/faces", params={"size": 2}, headers=key).json()
    assert listed["total_elements"] == 3 and listed["total_pages"] == 2 and len(listed["faces"]) == 2
    # subjects: list, rename, delete (an erasure)
    assert api.http.get("/api/v1/recognition/subjects", headers=key).json() == {
        "subjects": sorted([BIDEN, MIRANDA, OBAMA])
    }
    renamed = api.http.put(f"/api/v1/recognition/subjects/{MIRANDA}", json={"subject": "Lin"}, headers=key)
    assert renamed.json() == {"updated": True}
    assert api.http.delete("/api/v1/recognition/subjects/Lin", headers=key).json() == {"subject": "Lin"}
    deleted = api.http.delete("/api/v1/recognition/faces", params={"subject": BIDEN}, headers=key)
    assert deleted.json() == {"deleted": 1}
    assert api.http.get("/api/v1/recognition/subjects", headers=key).json() == {"subjects": [OBAMA]}
    assert api.http.get(f"/api/v1/people/{BIDEN}", headers=api.read_key).status_code == 404


def test_compreface_writes_need_an_admin_key_and_a_usable_face(enrolled: Api) -> None:
    api = enrolled
    readonly = {"x-api-key": api.read_key["X-API-Key"]}
    refused = api.http.post(
        "/api/v1/recognition/faces",
        params={"subject": "X"},
        files={"file": photo("obama.jpg")},
        headers=readonly,
    )
    assert error_of(refused) == (403, "forbidden")
    assert error_of(api.http.delete("/api/v1/recognition/subjects/Nobody", headers=api.admin_key)) == (
        404,
        "not_found",
    )
    no_face = api.http.post(
        "/api/v1/recognition/faces",
        params={"subject": OBAMA},
        files={"file": ("blank.png", _blank_png(), "image/png")},
        headers=api.admin_key,
    )
    assert error_of(no_face) == (422, "no_usable_face")


def _blank_png() -> bytes:
    import cv2
    import numpy as np

    ok, encoded = cv2.imencode(".png", np.full((200, 200, 3), 127, np.uint8))
    assert ok
    return encoded.tobytes()
