"""The service lease (``streamer.lease``): one ``vigil run`` per Redis, free again once its holder stops
renewing it. On real servers: the embedded one of a temporary home, and a private one that is full."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from streamer.lease import ServiceLease
from tests.conftest import stop_embedded
from tests.streamer.test_redis_errors import PrivateRedis, private_redis  # noqa: F401  (fixture)
from vigil.config.redis import RedisConfig
from vigil.errors import ServiceRunningError
from vigil.streams import connect_redis

pytestmark = pytest.mark.redis


@pytest.fixture
def client(tmp_path: Path) -> Iterator[redis.Redis]:
    embedded = connect_redis(RedisConfig(), tmp_path)
    yield embedded
    stop_embedded(embedded)


def make_lease(client: redis.Redis, lease_s: float = 5.0, key: str = "test:lease") -> ServiceLease:
    return ServiceLease(client, uuid.uuid4().hex[:8], lease_s=lease_s, key=key)


def test_a_second_service_is_refused_with_the_holder_and_the_expiry(client: redis.Redis) -> None:
    # given a service holding the lease
    first = make_lease(client)
    first.acquire()
    # when a second one tries, then it is refused in one line naming the first and its expiry
    with pytest.raises(ServiceRunningError, match=rf"pid {os.getpid()} on .*expires in [45]\.\d s") as caught:
        make_lease(client).acquire()
    assert "\n" not in str(caught.value)
    # and once the first releases it, the second gets it
    first.release()
    make_lease(client).acquire()


def test_a_lease_nobody_renews_expires(client: redis.Redis) -> None:
    # given a holder that stops renewing (killed)
    make_lease(client, lease_s=0.3).acquire()
    # when its lease has run out, then another service can start
    time.sleep(0.5)
    make_lease(client).acquire()


def test_renewal_keeps_the_lease_and_notices_a_takeover(client: redis.Redis) -> None:
    # given a holder with a short lease, renewed past its first expiry
    holder = make_lease(client, lease_s=0.6)
    holder.acquire()
    for _ in range(5):
        time.sleep(0.25)
        assert holder.renew_if_due()
    with pytest.raises(ServiceRunningError):
        make_lease(client).acquire()
    # when its lease lapsed (Redis unreachable meanwhile) and another service took it
    client.delete(holder.key)
    other = make_lease(client)
    other.acquire()
    time.sleep(0.25)
    # then the holder learns it lost it, and the other keeps it
    assert not holder.renew_if_due()
    assert other.renew_if_due()


def test_a_full_redis_does_not_cost_the_running_service_its_lease(private_redis: PrivateRedis) -> None:  # noqa: F811
    # given a holder on a Redis that then fills up (writes needing memory are refused)
    holder = make_lease(private_redis.client, lease_s=0.6)
    holder.acquire()
    private_redis.fill_up()
    # when it renews past its first expiry, then it keeps the lease
    for _ in range(4):
        time.sleep(0.25)
        assert holder.renew_if_due()
    assert private_redis.client.exists(holder.key)
