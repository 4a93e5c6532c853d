"""One HTTP POST of an event to a webhook endpoint, signed, and what its answer means.

Requests carry the event's JSON (``Event.to_json()``) as the body and these headers:

- ``Content-Type: application/json``
- ``X-Vigil-Event-Id``: the event's id (the same on every retry: receivers drop repeats by it);
- ``X-Vigil-Signature: sha256=<hex>``: HMAC-SHA256 of the exact body bytes with the endpoint's
  ``secret``, when one is set (:func:`verify_signature` is how a receiver checks it). The body
  holds ``event_id`` and ``captured_at``, so a receiver that wants to refuse replays keeps the
  ids it has seen and refuses old times; no separate timestamp header is signed.

Answers: a 2xx is delivered. 408 (timeout), 429 (too many requests) and 5xx, a timeout and
a failed connection (refused, reset, a host name that does not resolve: DNS may come back)
are worth another attempt; ``Retry-After`` (seconds or an HTTP date) is honoured. Anything else
(3xx: redirects are not followed; 4xx) is the receiver refusing this request for good.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx2

from vigil.config.bridges import WebhookEndpoint

CONTENT_TYPE = "application/json"
EVENT_ID_HEADER = "X-Vigil-Event-Id"
SIGNATURE_HEADER = "X-Vigil-Signature"
SIGNATURE_PREFIX = "sha256="
USER_AGENT = "vigil-webhooks/1"
# Answers that say "try again later" rather than "never".
_RETRYABLE_STATUSES = frozenset({408, 429})
# A Retry-After beyond an hour is a receiver asking to be left alone: the event would be dropped
# by age (``max_age_s``, an hour by default) long before, so waiting longer is pointless.
MAX_RETRY_AFTER_S = 3600.0
# Bytes of an answer's body read (and thrown away) to keep its connection; a longer one is dropped.
MAX_ANSWER_BYTES = 64 * 1024


class Verdict(enum.StrEnum):
    """What an attempt means for the event."""

    DELIVERED = "delivered"
    RETRY = "retry"
    """Worth another attempt (a server error, 408/429, no answer)."""
    REFUSED = "refused"
    """Refused for good (4xx other than 408/429, 3xx): retrying would get the same answer."""


@dataclass(frozen=True)
class Attempt:
    """The outcome of one POST.

    Attributes:
        verdict: What it means for the event.
        status: The HTTP status, or None when no answer came (timeout, connection failure).
        retry_after_s: The endpoint's ``Retry-After`` (seconds, at most ``MAX_RETRY_AFTER_S``), if any.
        detail: For logs: ``HTTP 503``, ``timed out after 10 s``, ``cannot connect (...)``.
    """

    verdict: Verdict
    status: int | None
    retry_after_s: float | None
    detail: str

    @property
    def answered(self) -> bool:
        """Whether the endpoint answered at all (any status)."""
        return self.status is not None


def sign(secret: str, body: bytes) -> str:
    """The ``X-Vigil-Signature`` value of ``body``: ``sha256=`` and the hex HMAC-SHA256 with ``secret``."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str) -> bool:
    """Whether ``header`` (``X-Vigil-Signature``) signs ``body`` with ``secret``: what a receiver runs.

    Compare in constant time, on the raw body bytes as received (not re-serialised JSON).
    """
    return hmac.compare_digest(sign(secret, body), header)


def verdict_of(status: int) -> Verdict:
    """What an HTTP status means for the event."""
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status in _RETRYABLE_STATUSES or status >= 500:
        return Verdict.RETRY
    return Verdict.REFUSED


def retry_after_s(value: str | None, now_s: float) -> float | None:
    """``Retry-After`` in seconds from now (it is seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value) if value.isdigit() else parsedate_to_datetime(value).timestamp() - now_s
    except (TypeError, ValueError, OverflowError):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


class WebhookSender:
    """POSTs events to one endpoint over a kept-alive connection. One thread at a time."""

    def __init__(self, endpoint: WebhookEndpoint, timeout_s: float) -> None:
        self.endpoint = endpoint
        self._timeout_s = timeout_s
        self._secret = endpoint.secret.get_secret_value() if endpoint.secret is not None else None
        # Redirects are not followed: a POST redirected is a misconfigured URL, and following it
        # would send the signed event somewhere nobody configured.
        self._client = httpx2.Client(
            timeout=timeout_s, follow_redirects=False, headers={"User-Agent": USER_AGENT}
        )

    def post(self, event_id: str, body: str) -> Attempt:
        """POST ``body`` (the event JSON) once; never raises for what the network or endpoint does."""
        content = body.encode("utf-8")
        headers = {"Content-Type": CONTENT_TYPE, EVENT_ID_HEADER: event_id}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, content)
        try:
            # Streamed: the answer's body is of no use and may be large. A short one is read to its
            # end, so that the connection is kept for the next request; a long one is cut short.
            with self._client.stream("POST", self.endpoint.url, content=content, headers=headers) as response:
                status = response.status_code
                wait_s = retry_after_s(response.headers.get("Retry-After"), time.time())
                read = 0
                for chunk in response.iter_raw():
                    read += len(chunk)
                    if read > MAX_ANSWER_BYTES:
                        break
        except httpx2.TimeoutException:
            return Attempt(Verdict.RETRY, None, None, f"timed out after {self._timeout_s:g} s")
        except httpx2.RequestError as exc:  # refused, reset, DNS, TLS, protocol: may all come back
            return Attempt(Verdict.RETRY, None, None, f"cannot connect ({_reason(exc, self.endpoint.url)})")
        return Attempt(verdict_of(status), status, wait_s, f"HTTP {status}")

    def close(self) -> None:
        self._client.close()

    @property
    def shown_url(self) -> str:
        """The endpoint's URL as logs show it, ``scheme://host[:port]/***`` (its path may be the secret)."""
        return self.endpoint.shown_url


def _reason(exc: httpx2.RequestError, url: str) -> str:
    """The error in a few words, without the URL some messages quote (its path or query may be a token)."""
    message = str(exc).replace(url, "<url>")
    with contextlib.suppress(RuntimeError):  # raised when the error carries no request
        message = message.replace(str(exc.request.url), "<url>")
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
