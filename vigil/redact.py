"""Hiding secrets in URLs before they are printed or logged: the one place that does it.

Redis URLs (``redis://user:pw@host/0``, ``redis://host/0?password=pw``) and camera URLs
(``rtsp://admin:pw@cam/stream``, ``https://cam/live?token=pw``) carry passwords; every
message, log line, banner and ``check-config`` output shows them through ``redact_url``.
Webhook URLs may keep their secret in the path (Home Assistant's ``/api/webhook/<id>``, Slack's
``/services/T0/B0/<token>``, Discord's ``/api/webhooks/<id>/<token>``): they are shown with
``hide_path=True``, as ``scheme://host[:port]/***``.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "***"
# Query parameters that hold a secret (lower case), as redis-py, RTSP and HTTP cameras name them.
SECRET_PARAMETERS = frozenset(
    {"password", "passwd", "pass", "pwd", "secret", "token", "access_token", "auth", "key", "api_key"}
)
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def redact_url(url: str, *, hide_path: bool = False) -> str:
    """``url`` with its password (user part) and secret query parameters replaced by ``***``.

    Text that is not a URL (a file path, a webcam index) is returned unchanged, unless ``hide_path``.

    Args:
        url: The URL (or camera source) to show.
        hide_path: Show ``scheme://host[:port]`` only, the rest (path, query, fragment) as a
            single ``/***`` and any user part as ``***@``: for URLs whose path is the secret
            (webhooks). Text that is not a URL is then cut at its first ``/`` or ``?`` alike.

    Example:
        >>> redact_url("redis://u:pw@host:6379/0?password=pw&db=1")
        'redis://u:***@host:6379/0?password=***&db=1'
        >>> redact_url("http://ha:8123/api/webhook/abc?x=1", hide_path=True)
        'http://ha:8123/***'
    """
    if not _URL_SCHEME.match(url):
        return _cut_at_path(url) if hide_path else url
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. a malformed IPv6 host: show the scheme only, never the rest
        return url.split("://", 1)[0] + "://" + REDACTED
    netloc = parts.netloc
    credentials, at, host = netloc.rpartition("@")
    if at and ":" in credentials:
        netloc = f"{credentials.split(':', 1)[0]}:{REDACTED}@{host}"
    if hide_path:  # a user name alone may be the token too (https://<token>@host/...)
        shown_host = f"{REDACTED}@{host}" if at else host
        hidden = parts.path not in ("", "/") or parts.query or parts.fragment
        return f"{parts.scheme}://{shown_host}" + ("/" + REDACTED if hidden else parts.path)
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(name.lower() in SECRET_PARAMETERS for name, _ in pairs):
            query = urlencode(
                [(name, REDACTED if name.lower() in SECRET_PARAMETERS else value) for name, value in pairs],
                safe="*",
            )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _cut_at_path(text: str) -> str:
    """``text`` (not a URL) up to its first ``/`` or ``?`` (then ``/***``), any ``user@`` as ``***@``."""
    end = min((index for index in (text.find("/"), text.find("?")) if index >= 0), default=len(text))
    _, at, host = text[:end].rpartition("@")
    return (f"{REDACTED}@" if at else "") + host + ("" if end == len(text) else "/" + REDACTED)
