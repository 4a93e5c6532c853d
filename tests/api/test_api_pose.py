"""``/api/v1/analyze`` returns each face's head pose."""

from __future__ import annotations

from tests.api.conftest import Api
from tests.conftest import PEOPLE, require


def test_analyze_returns_a_frontal_pose(enrolled: Api) -> None:
    photo = require(PEOPLE / "obama.jpg").read_bytes()
    analysed = enrolled.http.post(
        "/api/v1/analyze", files={"image": ("obama.jpg", photo, "image/jpeg")}, headers=enrolled.read_key
    )
    assert analysed.status_code == 200, analysed.text
    [face] = analysed.json()["faces"]
    # a frontal portrait: yaw and roll near zero (frontal by construction, within ±15°)
    assert set(face["pose"]) == {"yaw", "pitch", "roll"}
    assert abs(face["pose"]["yaw"]) < 15 and abs(face["pose"]["roll"]) < 15, face["pose"]
