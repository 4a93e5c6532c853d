"""``vigil analyze`` gives each face's head pose, and ``vigil bench pose`` writes its reports."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from tests.conftest import LFW, PEOPLE, require
from tests.models.test_head_pose import profile_frame
from vigil.cli import main


def test_analyze_gives_the_pose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a frame with a profile (the largest face) and smaller faces
    photo = tmp_path / "profile.png"
    cv2.imwrite(str(photo), cv2.cvtColor(profile_frame(), cv2.COLOR_RGB2BGR))
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path / "home"))
    # when analysed as JSON and as text
    assert main(["analyze", "--json", str(photo)]) == 0
    faces = json.loads(capsys.readouterr().out)["faces"]
    assert main(["analyze", str(photo)]) == 0
    text = capsys.readouterr().out
    # then the largest face reads as a profile turned to the subject's right, and text says so
    largest = max(faces, key=lambda face: face["box_xyxy"][2] - face["box_xyxy"][0])
    assert set(largest["pose"]) == {"yaw", "pitch", "roll"}
    assert largest["pose"]["yaw"] < -45, largest["pose"]
    assert " yaw -" in text, text


def test_bench_pose_writes_json_and_markdown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "pose.json"
    status = main(
        [
            "bench",
            "pose",
            "--people",
            str(require(PEOPLE)),
            "--data",
            str(require(LFW)),
            "--lfw-images",
            "4",
            "--json",
            str(report),
        ]
    )
    assert status == 0
    data = json.loads(report.read_text())
    assert data["synthetic"]["all"]["count"] == 450 and data["mirror"]["count"] >= 3
    assert "obama.jpg" in data["frontal"]
    assert report.with_suffix(".md").read_text().startswith("# Head pose")
