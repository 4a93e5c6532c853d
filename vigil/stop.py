"""Stopping long-running loops: the flag they watch, and a sleep that notices it."""

from __future__ import annotations

import time
from typing import Protocol


class StopFlag(Protocol):
    """What long-running loops watch to know when to stop: a ``threading.Event`` or a
    ``multiprocessing.Event`` (the service's processes share one).

    Loops poll ``is_set`` and never block in ``wait``: a process killed while waiting on a
    ``multiprocessing.Event`` leaves it unable to be set (``set`` then hangs forever).
    """

    def is_set(self) -> bool: ...


def pause(stop: StopFlag, seconds: float, step_s: float = 0.1) -> bool:
    """Sleep up to ``seconds``, returning early (True) once ``stop`` is set."""
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(step_s, remaining))
    return True
