"""``vigil bench api`` on a small load: a real server process, real uploads, real live streams."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import run_vigil

pytestmark = [pytest.mark.slow]


def test_bench_api_measures_identify_and_delivers_every_event_to_every_subscriber(tmp_path: Path) -> None:
    report = tmp_path / "api.json"
    result = run_vigil(
        "bench", "api", "--clients", "1", "3", "--duration", "2", "--subscribers", "4", "--events", "25",
        "--json", str(report), home=tmp_path / "home",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(report.read_text())
    assert [run["clients"] for run in figures["identify"]] == [1, 3]
    for run in figures["identify"]:
        assert run["requests"] > 0 and run["errors"] == 0, run
        assert 0 < run["p50_ms"] <= run["p99_ms"]
    # every event reached every subscriber, none twice
    assert figures["live"]["delivered"] == 4 * 25 and figures["live"]["duplicates"] == 0
    assert figures["live"]["events_per_s"] > 0
    assert "| Identify clients |" in report.with_suffix(".md").read_text()
