"""Template aging keeps to enrolment's pose limit: a profile never becomes an aging template."""

from __future__ import annotations

import pytest

from indexer.aging import refusal
from tests.indexer.test_corrections import recognition
from vigil.config.aging import AgingConfig


@pytest.mark.parametrize(
    ("yaw", "refused"),
    [
        (None, False),  # pose unknown (degenerate landmarks): the other rules decide
        (0.0, False),  # frontal
        (-44.0, False),  # turned, within the limit
        (46.0, True),  # beyond it
        (-80.0, True),  # a profile
    ],
)
def test_a_turned_face_is_refused_beyond_the_limit(yaw: float | None, refused: bool) -> None:
    reason = refusal(recognition(yaw_deg=yaw, max_yaw_deg=45.0), AgingConfig())
    assert (reason is not None) is refused, reason
    if refused:
        assert reason is not None and "beyond 45°" in reason
