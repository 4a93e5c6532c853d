"""The artifact registry and `vigil models`: store, list, promote, roll back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.calibration import active_calibration_path, read_calibration, shipped_calibration_path
from vigil.artifacts import ArtifactError, ArtifactRegistry
from vigil.cli import main

BACKBONE = "dlib_resnet_v1+flip"


def calibration_bytes(calibration_id: str) -> bytes:
    """The shipped calibration renamed, as a trainer would store a new one."""
    raw = json.loads(shipped_calibration_path(BACKBONE).read_text(encoding="utf-8"))
    raw["calibration_id"] = calibration_id
    return json.dumps(raw).encode()


def add_calibration(registry: ArtifactRegistry, calibration_id: str) -> str:
    artifact = registry.add(
        "calibration",
        {"calibration.json": calibration_bytes(calibration_id)},
        embedder_version=BACKBONE,
        metrics={"far": 0.001, "tar": 0.98},
        data={"dataset": "test"},
    )
    return artifact.version


def test_promote_and_rollback_move_the_calibration_the_service_reads(tmp_path: Path) -> None:
    # given two stored calibrations, none in force
    registry = ArtifactRegistry(tmp_path)
    first, second = add_calibration(registry, "first"), add_calibration(registry, "second")
    active = active_calibration_path(tmp_path)
    assert registry.current("calibration") is None and not active.exists()
    assert [artifact.version for artifact in registry.list("calibration")] == [first, second]
    # when both are promoted in turn
    registry.promote("calibration", first)
    registry.promote("calibration", second)
    # then the second is in force, in the file the indexer reads
    assert registry.current("calibration").version == second  # type: ignore[union-attr]
    assert read_calibration(active).calibration_id == "second"
    # when rolled back once, the first is in force again; twice, none (the shipped default applies)
    assert registry.rollback("calibration").version == first  # type: ignore[union-attr]
    assert read_calibration(active).calibration_id == "first"
    assert registry.rollback("calibration") is None
    assert not active.exists()
    # and a third rollback says there is nothing to roll back
    with pytest.raises(ArtifactError, match="nothing to roll back"):
        registry.rollback("calibration")


def test_an_artifact_in_force_cannot_be_removed(tmp_path: Path) -> None:
    registry = ArtifactRegistry(tmp_path)
    version = add_calibration(registry, "only")
    registry.promote("calibration", version)
    with pytest.raises(ArtifactError, match="in force"):
        registry.remove("calibration", version)
    registry.rollback("calibration")
    registry.remove("calibration", version)
    assert registry.list() == []


@pytest.mark.parametrize(
    ("kind", "version", "message"),
    [
        ("head", "head-20260101T000000-abcd", "no head"),
        ("calibration", "../../etc", "no calibration"),
        ("model", "x", "unknown artifact kind"),
    ],
)
def test_unknown_versions_and_kinds_are_refused(
    tmp_path: Path, kind: str, version: str, message: str
) -> None:
    with pytest.raises(ArtifactError, match=message):
        ArtifactRegistry(tmp_path).promote(kind, version)  # type: ignore[arg-type]


def test_file_names_with_paths_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not allowed"):
        ArtifactRegistry(tmp_path).add(
            "head", {"../escape.pt": b"x"}, embedder_version=BACKBONE, metrics={}, data={}
        )
    assert not (tmp_path / "models" / "escape.pt").exists()


def test_models_commands_list_promote_and_roll_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a home with one stored calibration
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path))
    version = add_calibration(ArtifactRegistry(tmp_path), "cli")
    # when it is promoted from the command line
    assert main(["models", "promote", version]) == 0
    # then the listing marks it in force, in text and JSON
    assert main(["models", "list"]) == 0
    assert f"* {version}" in capsys.readouterr().out
    assert main(["models", "list", "--json"]) == 0
    [listed] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert listed["version"] == version and listed["in_force"] is True and listed["metrics"]["far"] == 0.001
    # and a rollback leaves none in force
    assert main(["models", "rollback", "calibration"]) == 0
    assert "shipped calibration" in capsys.readouterr().out
    # and a version that names no kind is a one-line error, not a traceback
    assert main(["models", "promote", "nonsense"]) != 0
    assert "not an artifact version" in capsys.readouterr().err
