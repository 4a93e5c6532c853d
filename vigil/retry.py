"""One back-off policy for every loop that must outlive failures.

Camera readers reconnecting to a source, service processes riding out a Redis outage, and
the supervisor restarting a process that died all wait the same way: exponentially longer
after each failure in a row, capped, with jitter, and from the start again once things
have worked for a while. The delays come from redis-py's ``EqualJitterBackoff`` (the same
strategy objects redis-py's own ``Retry`` uses); :class:`Backoff` adds the state a loop
needs: how many failures in a row, and when a run was long enough to count as healthy.

Example:
    >>> backoff = Backoff(RetryPolicy(initial_s=0.5, max_s=10.0, healthy_after_s=60.0))
    >>> delay_s = backoff.failed(ran_s=0.2)  # 0.25 to 0.5 s; the next failure waits 0.5 to 1 s
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from redis.backoff import AbstractBackoff, EqualJitterBackoff

# A process that keeps dying is restarted after 1, 2, 4 ... s, at most 30 s; one that ran a
# minute had a real run, not a crash at start-up, so its next death starts from 1 s again.
RESTART_INITIAL_S = 1.0
RESTART_MAX_S = 30.0
RESTART_HEALTHY_AFTER_S = 60.0
# Redis outages inside a process: quick first retries (an embedded server restarts in well under
# a second), then at most every 10 s; 30 s of work since the last failure ends the streak.
REDIS_RETRY_INITIAL_S = 0.5
REDIS_RETRY_MAX_S = 10.0
REDIS_RETRY_HEALTHY_AFTER_S = 30.0


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait after the n-th failure in a row, and what resets the count.

    The n-th failure in a row waits ``min(max_s, initial_s * 2**(n - 1))`` scaled by a random
    factor in ``[0.5, 1.0]`` ("equal jitter", AWS Architecture Blog, 2015): half the delay is kept
    so retries never hammer a recovering server or camera, the other half is spread so many
    clients behind one lost switch do not come back in lock-step.

    Attributes:
        initial_s: Delay after the first failure (seconds, > 0), before jitter.
        max_s: Cap on the delay (seconds, ≥ ``initial_s``), before jitter.
        healthy_after_s: A run that lasted at least this long (seconds) before failing counts
            as a success: the failure after it is a first failure again. ``inf``: only
            :meth:`Backoff.succeeded` resets the count.
    """

    initial_s: float
    max_s: float
    healthy_after_s: float = math.inf

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError(f"need 0 < initial_s <= max_s, got {self.initial_s} and {self.max_s}")

    def strategy(self) -> AbstractBackoff:
        """The redis-py back-off strategy with this policy's delays (``compute(n - 1)`` for failure n)."""
        return EqualJitterBackoff(cap=self.max_s, base=self.initial_s)

    def delay_s(self, failures: int) -> float:
        """The pause after ``failures`` (≥ 1) failures in a row, jittered."""
        # redis-py counts from 0 and handles huge exponents (a camera away for days) without overflow.
        return float(self.strategy().compute(max(failures - 1, 0)))


RESTART_POLICY = RetryPolicy(RESTART_INITIAL_S, RESTART_MAX_S, RESTART_HEALTHY_AFTER_S)
"""The supervisor's, for restarting a process that died."""
REDIS_RETRY_POLICY = RetryPolicy(REDIS_RETRY_INITIAL_S, REDIS_RETRY_MAX_S, REDIS_RETRY_HEALTHY_AFTER_S)
"""Service processes', for reconnecting to Redis after an outage or a refused write."""


@dataclass
class Backoff:
    """One loop's failures in a row under a :class:`RetryPolicy`. Not thread-safe: one loop, one object.

    Attributes:
        policy: The delays and the healthy period.
        failures: Failures in a row so far (0 after a success).
    """

    policy: RetryPolicy
    failures: int = 0
    _strategy: AbstractBackoff = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._strategy = self.policy.strategy()

    def failed(self, ran_s: float = 0.0) -> float:
        """Count a failure after a run of ``ran_s`` seconds; returns how long to wait before retrying."""
        if ran_s >= self.policy.healthy_after_s:
            self.failures = 0
        self.failures += 1
        return float(self._strategy.compute(self.failures - 1))

    def succeeded(self) -> None:
        """The operation worked: the next failure waits the initial delay again."""
        self.failures = 0
