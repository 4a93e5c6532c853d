"""The supervisor's life cycle: its children die with it, one service per Redis, restarts back off.

Each test runs `vigil run` / `vigil worker` as a real process on the embedded Redis of its own
VIGIL_HOME and kills real processes with real signals.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import psutil
import pytest

from tests.conftest import is_alive, require
from tests.streamer.conftest import CLIP, wait_for
from tests.streamer.test_resilience import Service, home  # noqa: F401  (the enrolled-home fixture)
from tests.test_cli import assert_one_line_error, run_vigil
from tests.test_embedded_redis import servers_on

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def _children_of(pid: int) -> list[int]:
    return [child.pid for child in psutil.Process(pid).children(recursive=True)]


def test_children_die_with_a_killed_supervisor(home: Path) -> None:  # noqa: F811
    # given the service playing the clip in real time, its tracker, worker and reader running
    service = Service(home, str(require(CLIP)), workers=1)
    children: list[int] = []
    try:
        assert wait_for(lambda: service.source("hamilton").get("state") == "live", 120), service.log_text()[
            -2000:
        ]
        children = [pid for pid in _children_of(service.process.pid) if is_alive(pid)]
        assert len(children) >= 3, f"expected tracker, worker and reader, got {children}"
        # when the supervisor is killed with no chance to clean up
        service.process.send_signal(signal.SIGKILL)
        service.process.communicate(timeout=10)  # reaps it and closes its pipe
        # then every one of its processes is gone within seconds, not orphaned under PID 1
        wait_for(lambda: not [pid for pid in children if is_alive(pid)], 10)
        survivors = [pid for pid in children if is_alive(pid)]
        assert not survivors, f"still running after the supervisor died: {survivors}"
    finally:
        # only this test's own processes, and the embedded servers, which outlive a killed service by design
        for pid in [*children, *servers_on(home / "redis-frames"), *servers_on(home / "redis")]:
            if is_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_second_service_on_the_same_redis_is_refused_in_one_line(home: Path) -> None:  # noqa: F811
    # given a service running on the embedded Redis of this home
    service = Service(home, str(require(CLIP)), workers=1)
    try:
        assert wait_for(lambda: bool(service.workers()), 120), service.log_text()[-2000:]
        # when a second `vigil run` starts on the same Redis
        second = run_vigil("run", str(require(CLIP)), "--metrics-port", "0", home=home, timeout_s=60)
        # then it refuses in one line naming the holder and when its lease expires, and started nothing
        assert_one_line_error(second, f"pid {service.process.pid}")
        assert re.search(r"expires in \d+(\.\d+)? s", second.stderr), second.stderr
        assert service.process.poll() is None, "the first service must carry on"
    finally:
        service.stop()
    service.events(timeout_s=120)


def test_a_crashing_process_is_restarted_after_a_growing_pause(home: Path) -> None:  # noqa: F811
    # given a workers-only node whose worker is killed (a transient crash, e.g. the OOM killer)
    # as soon as it starts, every time
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env["VIGIL_HOME"] = str(home)
    log_path = home / "worker-node.log"
    with log_path.open("wb") as log:
        node = subprocess.Popen(
            [sys.executable, "-m", "vigil", "-v", "worker", "--workers", "1", "--metrics-port", "0"],
            stderr=log,
            env=env,
        )
    killed: set[int] = set()

    def kill_new_workers() -> bool:
        for pid in map(int, re.findall(r"started worker-0 \(pid (\d+)\)", log_path.read_text())):
            if pid not in killed:
                killed.add(pid)
                if is_alive(pid):
                    os.kill(pid, signal.SIGKILL)
        return len(killed) >= 5

    try:
        # when it has been restarted a few times
        assert wait_for(kill_new_workers, 150), log_path.read_text()[-3000:]
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=60)
    # then each restart waits longer than the one before it (1, 2, 4 ... s, jittered), and says so
    log_text = log_path.read_text()
    delays = [
        float(d)
        for d in re.findall(r"worker-0 exited with status -?\d+; restarting it in ([\d.]+) s", log_text)
    ]
    assert len(delays) >= 4 and delays[3] > delays[0], log_text[-3000:]
    started = [
        datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for stamp in re.findall(r"^(\S+ \S+) INFO \S+: started worker-0", log_text, re.MULTILINE)
    ]
    gaps = [later - earlier for earlier, later in itertools.pairwise(started)]
    assert gaps[3] > gaps[0] + 1.5, f"restart gaps {gaps} do not grow"
