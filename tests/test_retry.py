"""The one back-off policy (``vigil.retry``) that readers, service processes and the supervisor share."""

from __future__ import annotations

import math

import pytest
from redis.backoff import EqualJitterBackoff

from vigil.retry import RESTART_POLICY, Backoff, RetryPolicy


@pytest.mark.parametrize(
    ("failures", "low_s", "high_s"),
    [
        # first failure: the initial delay, half of it jittered away at most
        (1, 0.25, 0.5),
        # doubles per failure
        (2, 0.5, 1.0),
        (4, 2.0, 4.0),
        # capped at max_s
        (10, 5.0, 10.0),
        # no overflow, however long a camera stays away
        (100_000, 5.0, 10.0),
    ],
)
def test_delays_double_with_equal_jitter_up_to_the_cap(failures: int, low_s: float, high_s: float) -> None:
    # given a policy of 0.5 s doubling to 10 s
    policy = RetryPolicy(initial_s=0.5, max_s=10.0)
    # when the delay after `failures` failures in a row is drawn many times
    delays = [policy.delay_s(failures) for _ in range(200)]
    # then it stays in its band, and is spread over it
    assert low_s <= min(delays) and max(delays) <= high_s, (min(delays), max(delays))
    assert max(delays) - min(delays) > (high_s - low_s) / 2, "delays must be jittered"


def test_the_policy_is_redis_pys_equal_jitter_strategy() -> None:
    # the strategy object is redis-py's own, so a redis.retry.Retry can use the same policy
    assert RESTART_POLICY.strategy() == EqualJitterBackoff(
        cap=RESTART_POLICY.max_s, base=RESTART_POLICY.initial_s
    )


@pytest.mark.parametrize(
    ("initial_s", "max_s", "expected"),
    [
        # a valid policy
        (0.5, 10.0, None),
        # no delay at all would retry in a tight loop
        (0.0, 10.0, ValueError),
        # a cap below the first delay
        (5.0, 1.0, ValueError),
    ],
)
def test_policies_are_checked(initial_s: float, max_s: float, expected: type[Exception] | None) -> None:
    if expected is None:
        RetryPolicy(initial_s, max_s)
    else:
        with pytest.raises(expected):
            RetryPolicy(initial_s, max_s)


def test_failures_in_a_row_grow_the_pause_and_a_healthy_run_resets_it() -> None:
    # given a back-off whose runs count as healthy after 60 s
    backoff = Backoff(RetryPolicy(initial_s=1.0, max_s=30.0, healthy_after_s=60.0))
    # when a process dies at once four times in a row
    delays = [backoff.failed(ran_s=0.5) for _ in range(4)]
    # then each pause is in its doubled band
    for failures, delay_s in enumerate(delays, start=1):
        assert 2 ** (failures - 1) / 2 <= delay_s <= 2 ** (failures - 1), (failures, delays)
    assert backoff.failures == 4
    # and when it then dies after a run of a minute, it starts from the first delay again
    assert backoff.failed(ran_s=61.0) <= 1.0
    assert backoff.failures == 1
    # and a success resets the count too
    backoff.succeeded()
    assert backoff.failures == 0


def test_without_a_healthy_period_only_success_resets() -> None:
    backoff = Backoff(RetryPolicy(initial_s=1.0, max_s=30.0))
    assert backoff.policy.healthy_after_s == math.inf
    backoff.failed(ran_s=1e9)
    backoff.failed(ran_s=1e9)
    assert backoff.failures == 2, "a long run alone does not reset a policy without a healthy period"
