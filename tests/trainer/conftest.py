"""Builders shared by the trainer tests: small real LFW pair subsets, and running the CLI in-process."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.conftest import LFW, require
from trainer.pairs import Pair, read_pairs
from vigil.cli import main
from vigil.config import Settings


def lfw_subset(fold: int, matched: int, mismatched: int) -> list[Pair]:
    """The first ``matched`` same-person and ``mismatched`` different-people pairs of an LFW fold.

    LFW View 2 folds hold disjoint people, so subsets of different folds share nobody.
    """
    pairs = _lfw_pairs()
    return [p for p in pairs if p.fold == fold and p.same][:matched] + [
        p for p in pairs if p.fold == fold and not p.same
    ][:mismatched]


def write_plain_pairs(pairs: Sequence[Pair], images: Path, path: Path, *, with_folds: bool) -> Path:
    """Write ``pairs`` as plain ``path_a path_b same [fold]`` lines relative to ``images``."""
    lines = [
        f"{p.path_a.relative_to(images)} {p.path_b.relative_to(images)} {int(p.same)}"
        + (f" {p.fold}" if with_folds else "")
        for p in pairs
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def cli_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run ``vigil ARGS`` in this process, expecting it to fail; return its one error line.

    Raises:
        AssertionError: It did not exit 2 with exactly one ``vigil: error:`` line on stderr.
    """
    status = main(list(args))
    stderr = capsys.readouterr().err
    lines = [line for line in stderr.splitlines() if line.startswith("vigil: error:")]
    assert status == 2 and len(lines) == 1, f"exit {status}, stderr: {stderr}"
    assert "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture
def home(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A VIGIL_HOME of the test's own for the CLI (artifacts, calibration in force) that shares the
    session's embedding cache, so real images are embedded once per session."""
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    vigil_home = tmp_path / "home"
    vigil_home.mkdir()
    (vigil_home / "cache").symlink_to(settings.cache_dir, target_is_directory=True)
    for name in [name for name in os.environ if name.startswith("VIGIL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("VIGIL_HOME", str(vigil_home))
    return vigil_home


@functools.cache
def _lfw_pairs() -> tuple[Pair, ...]:
    """LFW's pairs.txt, read (and its 12,000 image paths checked) once per session."""
    return tuple(read_pairs(require(LFW / "pairs.txt"), require(LFW / "lfw-deepfunneled")))
