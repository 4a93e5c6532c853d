"""``vigil analyze`` reports each face's expression, and carries on without the weights."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.conftest import PEOPLE, require
from tests.models.expression_files import installed_expression_file, models_dir_without_expression
from vigil.cli import main
from vigil.models.expression import LABELS
from vigil.models.model_files import EXPRESSION

SMILING = "obama.jpg"  # a broad smile (tests/models/test_expression.py)


def test_analyze_prints_the_expression(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = require(PEOPLE / SMILING)
    installed_expression_file()
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path / "home"))
    # when the smiling photo is analysed as text and as JSON
    assert main(["analyze", str(photo)]) == 0
    text = capsys.readouterr().out
    assert main(["analyze", "--json", str(photo)]) == 0
    [face] = json.loads(capsys.readouterr().out)["faces"]
    # then the text names the top expression with its probability, the JSON all seven
    assert "looks happy (" in text, text
    assert face["expression"]["label"] == "happy", face
    assert list(face["expression"]["probabilities"]) == list(LABELS)
    assert abs(sum(face["expression"]["probabilities"].values()) - 1) < 1e-3


def test_analyze_without_expression_weights_still_analyses(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given a models folder without the expression model
    photo = require(PEOPLE / SMILING)
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VIGIL_MODELS_DIR", str(models_dir_without_expression(tmp_path)))
    # when the photo is analysed
    with caplog.at_level(logging.WARNING, logger="vigil.models.expression"):
        status = main(["analyze", "--json", str(photo)])
    # then age and gender are there, the expression is null, and a warning says what to run
    assert status == 0
    [face] = json.loads(capsys.readouterr().out)["faces"]
    assert face["expression"] is None and face["gender"] in {"female", "male"}, face
    assert f"{EXPRESSION.name} is missing; run `vigil models install-pack`" in caplog.text, caplog.text
