"""The command line: real subprocesses, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PEOPLE, require


def run_vigil(*args: str, home: Path, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env["VIGIL_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "vigil", *args], capture_output=True, text=True, env=env, timeout=timeout_s
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 2, f"exit {result.returncode}: {result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("vigil: error:")]
    assert len(lines) == 1 and fragment in lines[0], result.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        # a LFW folder that does not exist
        (["bench", "lfw", "--data", "/nonexistent/lfw"], "pairs.txt"),
        # a config file that does not exist
        (["--config", "/nonexistent/vigil.yaml", "check-config"], "cannot read config file"),
    ],
    ids=["missing-lfw", "missing-config"],
)
def test_errors_are_one_line(tmp_path: Path, args: list[str], fragment: str) -> None:
    assert_one_line_error(run_vigil(*args, home=tmp_path), fragment)


def test_malformed_config_names_the_setting(tmp_path: Path) -> None:
    config = tmp_path / "vigil.yaml"
    config.write_text("detector:\n  scale_factor: 2\n")
    assert_one_line_error(
        run_vigil("--config", str(config), "check-config", home=tmp_path), "detector.scale_factor"
    )


def test_detect_reports_bad_files_and_keeps_going(tmp_path: Path) -> None:
    # given one good photo and one file that is not an image
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    good = require(PEOPLE / "obama.jpg")
    # when both are passed to `vigil detect --json`
    result = run_vigil("detect", "--json", str(bad), str(good), home=tmp_path)
    # then the bad one is one error line, the good one still gets its face, and the exit status says failure
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "not an image file" in result.stderr
    [line] = result.stdout.splitlines()
    record = json.loads(line)
    assert record["image"] == str(good) and len(record["faces"]) == 1
    assert len(record["faces"][0]["embedding"]) == 128


def test_check_config_prints_settings(tmp_path: Path) -> None:
    result = run_vigil("check-config", home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["home"] == str(tmp_path)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        # zero repeats is refused by the argument parser, before any work
        (["bench", "detect", "--repeats", "0"], "must be a positive integer"),
        # results that could not be written are refused before the benchmark runs
        (["bench", "index", "--json", "/proc/vigil/index.json"], "cannot create"),
    ],
    ids=["zero-repeats", "unwritable-json"],
)
def test_bad_bench_arguments_fail_fast(tmp_path: Path, args: list[str], fragment: str) -> None:
    result = run_vigil(*args, home=tmp_path, timeout_s=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert fragment in result.stderr, result.stderr
