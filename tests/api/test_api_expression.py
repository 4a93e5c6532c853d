"""``/api/v1/analyze`` returns each face's expression, and null ones without the weights."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.api.conftest import Api
from tests.conftest import PEOPLE, require
from tests.models.expression_files import installed_expression_file, models_dir_without_expression
from vigil.api.app import create_app
from vigil.models.expression import LABELS

SMILING = "obama.jpg"  # a broad smile (tests/models/test_expression.py)


def test_api_analyze_returns_the_expression(api: Api) -> None:
    installed_expression_file()
    photo = require(PEOPLE / SMILING).read_bytes()
    # when the smiling photo is uploaded
    response = api.http.post(
        "/api/v1/analyze", files={"image": (SMILING, photo, "image/jpeg")}, headers=api.read_key
    )
    # then its face comes with the expression and all seven probabilities
    assert response.status_code == 200, response.text
    [face] = response.json()["faces"]
    assert face["expression"]["label"] == "happy", face
    assert set(face["expression"]["probabilities"]) == set(LABELS)


def test_api_analyze_without_expression_weights_gives_null(api: Api, tmp_path: Path) -> None:
    # given an API whose models folder lacks the expression model
    settings = api.settings.model_copy(update={"models_dir": models_dir_without_expression(tmp_path)})
    without = TestClient(create_app(settings, api.redis))
    photo = require(PEOPLE / SMILING).read_bytes()
    # when the photo is uploaded, then the analysis succeeds with a null expression
    response = without.post(
        "/api/v1/analyze", files={"image": (SMILING, photo, "image/jpeg")}, headers=api.read_key
    )
    assert response.status_code == 200, response.text
    [face] = response.json()["faces"]
    assert face["expression"] is None and 0 < face["age"] < 120, face
