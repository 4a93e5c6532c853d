"""One webhook endpoint's delivery thread: from its queue in Redis to its URL, with back-off.

The thread takes the next due event from the endpoint's queue (``WebhookQueue.claim``), POSTs it
once (``WebhookSender``) and records what came of it:

- 2xx: delivered, out of the queue;
- refused (4xx other than 408/429, 3xx): out of the queue, dropped and counted, logged once per
  status (the endpoint likely refuses every event alike), never retried;
- anything else (5xx, 408, 429, a timeout, no connection): tried again after the policy's pause
  for that event's attempt count (or ``Retry-After``, if longer), until ``max_attempts``; the
  endpoint itself rests as long before its next request, so a dead endpoint is probed with one
  event at a time rather than flooded with every waiting one.

Events captured more than ``max_age_s`` ago are dropped from the queue (counted) every second.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from streamer import metrics
from streamer.bridges.webhook_delivery import Attempt, Verdict, WebhookSender
from streamer.bridges.webhook_queue import QueuedEvent, WebhookQueue
from vigil.config.bridges import BridgeFilter, WebhookEndpoint, WebhooksBridgeConfig
from vigil.errors import RedisUnavailableError
from vigil.retry import REDIS_RETRY_POLICY, Backoff, RetryPolicy
from vigil.stop import StopFlag, pause

logger = logging.getLogger(__name__)

BRIDGE = "webhooks"
"""The bridge's name: its metric label and consumer group."""
# An event taken for delivery is someone else's to retry if its bridge vanished, once its request
# is surely over: httpx gives connecting, sending and reading timeout_s each, plus this margin.
LEASE_MARGIN_S = 5.0
# How often too-old events are dropped, and how long the thread sleeps with nothing due (an event
# queued meanwhile wakes it at once).
EXPIRE_EVERY_S = 1.0
IDLE_WAIT_S = 1.0
# An endpoint whose request has been in flight this long no longer counts as keeping up (see
# ``EndpointDelivery.keeping_up``).
STALLED_AFTER_S = 1.0


class EndpointDelivery:
    """One endpoint: its filter, its queue, and the loop that delivers from it (``run``, one thread).

    Attributes:
        config: The endpoint's settings.
        rule: Which events it gets (its own filter, else ``bridges.filter``).
        queue: Its durable queue.
        wake: Set when events were queued for it (the loop stops waiting).
    """

    def __init__(
        self,
        config: WebhookEndpoint,
        rule: BridgeFilter,
        queue: WebhookQueue,
        settings: WebhooksBridgeConfig,
        policy: RetryPolicy,
    ) -> None:
        self.config = config
        self.rule = rule
        self.queue = queue
        self.wake = threading.Event()
        self._settings = settings
        self._policy = policy
        self._sender = WebhookSender(config, settings.timeout_s)
        self._backoff = Backoff(policy)  # the endpoint's outage, not one event's
        self._up = True
        self._busy_since_s: float | None = None  # time.monotonic() of the request in flight
        self._refusals_logged: set[int] = set()

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def shown_url(self) -> str:
        """The URL as logs show it: ``scheme://host[:port]/***`` (its path may be the secret)."""
        return self._sender.shown_url

    def keeping_up(self) -> bool:
        """Whether it delivers as it should: its last attempt worked and no request hangs now.

        The reader leaves events in the stream, rather than overfill the queue, only for such an
        endpoint: one that fails or hangs must hold up no one.
        """
        busy_since_s = self._busy_since_s
        return self._up and (busy_since_s is None or time.monotonic() - busy_since_s < STALLED_AFTER_S)

    def count(self, outcome: str, amount: int = 1) -> None:
        """Add to ``vigil_bridge_events_total{bridge="webhooks", target=<name>, outcome}``."""
        metrics.BRIDGE_EVENTS.labels(bridge=BRIDGE, target=self.name, outcome=outcome).inc(amount)

    def run(self, stop: StopFlag) -> None:
        """Deliver from the queue until ``stop`` is set (the request in flight finishes first)."""
        redis_backoff = Backoff(REDIS_RETRY_POLICY)
        lease_s = 3 * self._settings.timeout_s + LEASE_MARGIN_S
        expired_at_s = 0.0
        while not stop.is_set():
            try:
                now_s = time.time()
                if now_s - expired_at_s >= EXPIRE_EVERY_S:
                    expired_at_s = now_s
                    self._expire(now_s)
                self.wake.clear()  # before looking: an event queued meanwhile ends the wait below
                claim = self.queue.claim(now_s, lease_s)
                redis_backoff.succeeded()
                if claim.event is None:
                    due_in_s = IDLE_WAIT_S if claim.next_due_s is None else claim.next_due_s - now_s
                    self.wake.wait(min(max(due_in_s, 0.0), IDLE_WAIT_S))
                    continue
                rest_s = self._deliver(claim.event)
                if rest_s > 0:
                    pause(stop, rest_s)
            except RedisUnavailableError as exc:  # RedisRefusedError too; the bridge reconnects
                metrics.REDIS_ERRORS.labels(component="bridge", error=exc.kind.value).inc()
                delay_s = redis_backoff.failed()
                logger.warning("webhook %s: %s; retrying in %.1f s", self.name, exc, delay_s)
                pause(stop, delay_s)
            except Exception:  # a bug must not end this endpoint's deliveries for good
                logger.exception("webhook %s: delivery failed unexpectedly; carrying on", self.name)
                self.count("failed")
                pause(stop, redis_backoff.failed())

    def close(self) -> None:
        self._sender.close()

    def _expire(self, now_s: float) -> None:
        expired = self.queue.expire(now_s - self._settings.max_age_s)
        if expired:
            self.count("dropped", expired)
            logger.warning(
                "webhook %s: dropped %d events older than %g s (bridges.webhooks.max_age_s)",
                self.name, expired, self._settings.max_age_s,
            )  # fmt: skip

    def _deliver(self, event: QueuedEvent) -> float:
        """Try ``event`` once and record the outcome; returns how long the endpoint rests now."""
        self._busy_since_s = time.monotonic()
        try:
            attempt = self._sender.post(event.event_id, event.body)
        finally:
            self._busy_since_s = None
        metrics.BRIDGE_CONNECTED.labels(bridge=BRIDGE, target=self.name).set(1 if attempt.answered else 0)
        if attempt.verdict is Verdict.DELIVERED:
            self.queue.remove(event.event_id)
            self.count("delivered")
            self._answers()
            return 0.0
        self.count("failed")
        attempts = event.attempts + 1
        if attempt.verdict is Verdict.REFUSED:
            self.queue.remove(event.event_id)
            self.count("dropped")
            self._answers()  # it refuses this request, which says nothing about the next
            status = attempt.status or 0
            if status not in self._refusals_logged:  # once per status: it may refuse every event alike
                self._refusals_logged.add(status)
                logger.warning(
                    "webhook %s refused event %s with %s; dropped, not retried (logged once per status): "
                    "check the endpoint's URL and what it accepts",
                    self.name, event.event_id, attempt.detail,
                )  # fmt: skip
            return 0.0
        if attempts >= self._settings.max_attempts:
            self.queue.remove(event.event_id)
            self.count("dropped")
            logger.warning(
                "webhook %s: event %s failed %d times (bridges.webhooks.max_attempts), last %s; dropped",
                self.name, event.event_id, attempts, attempt.detail,
            )  # fmt: skip
        else:
            wait_s = max(self._policy.delay_s(attempts), attempt.retry_after_s or 0.0)
            if self.queue.reschedule(event.event_id, time.time() + wait_s, attempts):
                self.count("retried")
        return self._failing(attempt)

    def _failing(self, attempt: Attempt) -> float:
        """The endpoint failed an attempt: how long it rests before the next (back-off, or Retry-After)."""
        rest_s = max(self._backoff.failed(), attempt.retry_after_s or 0.0)
        if self._up:
            self._up = False
            logger.warning(
                "webhook %s (%s): %s; retrying with back-off, its events wait in its queue",
                self.name, self.shown_url, attempt.detail,
            )  # fmt: skip
        else:
            logger.debug("webhook %s: %s; next attempt in %.1f s", self.name, attempt.detail, rest_s)
        return rest_s

    def _answers(self) -> None:
        self._backoff.succeeded()
        if not self._up:
            self._up = True
            logger.info("webhook %s answers again", self.name)


@dataclass(frozen=True)
class EitherStop:
    """A stop flag that is set once either of two is (the caller's, or the bridge's own shutdown)."""

    first: StopFlag
    second: StopFlag

    def is_set(self) -> bool:
        return self.first.is_set() or self.second.is_set()
