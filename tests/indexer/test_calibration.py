"""Calibration files: format, validation, precedence and reload on change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.calibration import (
    Calibration,
    CalibrationSource,
    GallerySizeRule,
    IdentificationCalibration,
    RuleOverride,
    Thresholds,
    active_calibration_path,
    read_calibration,
    shipped_calibration_path,
    write_calibration,
)
from vigil.config import IndexerConfig
from vigil.errors import CalibrationError

EMBEDDER = "test_embedder_v1"


def _calibration(threshold: float, margin: float = 0.02, embedder: str = EMBEDDER) -> Calibration:
    return Calibration(
        calibration_id=f"test-{threshold}",
        created_at="2026-11-22T00:00:00+00:00",
        embedder_version=embedder,
        identification=[
            IdentificationCalibration(
                threshold=threshold,
                margin=margin,
                target_fpir=target,
                fpir=target,
                dir=0.9,
                misidentification_rate=0.01,
                gallery_identities=10,
                known_probes=20,
                unknown_probes=30,
            )
            for target in (1e-2, 1e-3)
        ],
        data={"dataset": "synthetic"},
    )


def test_a_written_calibration_reads_back_equal(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    write_calibration(path, _calibration(0.8))
    assert read_calibration(path) == _calibration(0.8)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not JSON"),
        (json.dumps({"format": "something-else"}), "not a Vigil calibration file"),
        (json.dumps({"format": "vigil-calibration", "format_version": 99}), "format version 99"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CalibrationError, match=message) as error:
        read_calibration(path)
    assert "\n" not in str(error.value)


def test_an_out_of_range_threshold_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    raw = json.loads(_calibration(0.8).model_dump_json())
    raw["identification"][0]["threshold"] = 7
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(CalibrationError, match=r"identification\.0\.threshold"):
        read_calibration(path)


def test_the_trainers_calibration_in_home_wins_and_is_reloaded_when_replaced(tmp_path: Path) -> None:
    source = CalibrationSource(IndexerConfig(), tmp_path, EMBEDDER)
    with pytest.raises(CalibrationError, match="no calibration for embedder"):
        source.current()
    write_calibration(active_calibration_path(tmp_path), _calibration(0.8))
    assert source.current().threshold == 0.8
    write_calibration(active_calibration_path(tmp_path), _calibration(0.85, margin=0.05))
    rule = source.current()
    assert (rule.threshold, rule.margin) == (0.85, 0.05)
    assert "test-0.85" in rule.source


def test_configured_thresholds_override_the_calibration(tmp_path: Path) -> None:
    write_calibration(active_calibration_path(tmp_path), _calibration(0.8, margin=0.02))
    only_threshold = CalibrationSource(IndexerConfig(match_threshold=0.9), tmp_path, EMBEDDER).current()
    assert (only_threshold.threshold, only_threshold.margin) == (0.9, 0.02)
    both = IndexerConfig(match_threshold=0.7, match_margin=0.1)
    # Both set: no calibration file is needed at all.
    rule = CalibrationSource(both, tmp_path / "empty", "uncalibrated").current()
    assert (rule.threshold, rule.margin, rule.source) == (0.7, 0.1, "configuration")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        # a camera's threshold alone: the calibrated margin stays
        (RuleOverride(threshold=0.99, label="camera vault's override"), (0.99, 0.02)),
        # its margin alone: the calibrated threshold stays
        (RuleOverride(margin=0.1, label="camera vault's override"), (0.8, 0.1)),
        # both set
        (RuleOverride(0.7, 0.0, "camera vault's override"), (0.7, 0.0)),
    ],
)
def test_an_override_replaces_only_what_it_sets(
    override: RuleOverride, expected: tuple[float, float]
) -> None:
    rule = override.over(Thresholds(0.8, 0.02, "calibration test-0.8"))
    assert (rule.threshold, rule.margin) == expected
    assert rule.source == "calibration test-0.8; camera vault's override", "the rule says whose it is"


def test_a_calibration_for_another_embedder_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    write_calibration(path, _calibration(0.8, embedder="another_v2"))
    source = CalibrationSource(IndexerConfig(calibration_file=path), tmp_path, EMBEDDER)
    with pytest.raises(CalibrationError, match="is for embedder another_v2"):
        source.current()


def test_the_default_embedder_ships_a_calibration_fitted_on_lfw(tmp_path: Path) -> None:
    path = shipped_calibration_path("dlib_resnet_v1+flip")
    calibration = read_calibration(path)
    assert calibration.embedder_version == "dlib_resnet_v1+flip"
    assert "LFW" in str(calibration.data["dataset"])
    for rules in calibration.identification:
        assert rules.fpir <= rules.target_fpir
        assert all(rule.fpir <= rules.target_fpir for rule in rules.by_gallery_size)
        thresholds = [rule.threshold for rule in rules.by_gallery_size] + [rules.threshold]
        assert thresholds == sorted(thresholds)  # never more lenient for a bigger gallery
    # the default operating point is the balanced one, for the full LFW gallery size
    rule = CalibrationSource(IndexerConfig(), tmp_path, "dlib_resnet_v1+flip").current()
    assert rule.threshold == calibration.for_target(IndexerConfig().target_fpir).threshold


def test_a_target_fpir_the_calibration_lacks_is_refused(tmp_path: Path) -> None:
    write_calibration(active_calibration_path(tmp_path), _calibration(0.8))
    source = CalibrationSource(IndexerConfig(target_fpir=0.05), tmp_path, EMBEDDER)
    with pytest.raises(CalibrationError, match=r"no rules for target FPIR 0.05 \(it has 0.01, 0.001\)"):
        source.current()


def test_smaller_galleries_get_the_rule_fitted_for_their_size() -> None:
    rules = [
        GallerySizeRule(gallery_identities=10, threshold=0.90, margin=0.0, fpir=1e-3, dir=0.9),
        GallerySizeRule(gallery_identities=100, threshold=0.93, margin=0.02, fpir=1e-3, dir=0.8),
    ]
    identification = (
        _calibration(0.96, margin=0.03).identification[0].model_copy(update={"by_gallery_size": rules})
    )
    assert identification.rule_for(3) == (0.90, 0.0)
    assert identification.rule_for(10) == (0.90, 0.0)
    assert identification.rule_for(11) == (0.93, 0.02)  # the next size up: never more lenient
    assert identification.rule_for(5000) == (0.96, 0.03)
    assert identification.rule_for(None) == (0.96, 0.03)
