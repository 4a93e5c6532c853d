"""A worker that cannot start for good (missing model weights) stops the service in one line.

A missing or corrupt model file, or a setting no restart can change, is permanent: restarting
the worker forever with a growing pause would only hide it. ``vigil run`` and ``vigil worker``
must stop with one line saying what is wrong, a non-zero exit, and no traceback in the log.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require
from tests.streamer.conftest import CLIP
from tests.test_cli import assert_one_line_error

pytestmark = [pytest.mark.redis, pytest.mark.slow]

STOP_WITHIN_S = 120.0


@pytest.mark.parametrize(
    "command",
    [
        # the workers-only node
        ["worker", "--workers", "1"],
        # the whole service on a clip
        ["run", "--workers", "1", "<clip>"],
    ],
    ids=["vigil-worker", "vigil-run"],
)
def test_missing_weights_stop_the_service_in_one_line(tmp_path: Path, command: list[str]) -> None:
    # given an embedder whose weights file does not exist
    missing = tmp_path / "missing.pt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env |= {
        "VIGIL_HOME": str(tmp_path),
        "VIGIL_EMBEDDER__BACKEND": "facenet",  # the one backend that always loads weights_path
        "VIGIL_EMBEDDER__WEIGHTS_PATH": str(missing),
    }
    args = [str(require(CLIP)) if arg == "<clip>" else arg for arg in command]
    # when the service starts
    result = subprocess.run(
        [sys.executable, "-m", "vigil", *args, "--metrics-port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=STOP_WITHIN_S,
    )
    # then it stops by itself with one line naming the file, and no traceback anywhere
    assert_one_line_error(result, "missing.pt")
    assert "restarting it in" not in result.stderr, "a permanent error must not be restarted"
