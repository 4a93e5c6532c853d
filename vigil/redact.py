"""Hiding secrets in URLs before they are printed or logged: the one place that does it.

Redis URLs (``redis://user:pw@host/0``, ``redis://host/0?password=pw``) and camera URLs
(``rtsp://admin:pw@cam/stream``, ``https://cam/live?token=pw``) carry passwords; every
message, log line, banner and ``check-config`` output shows them through ``redact_url``.
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


def redact_url(url: str) -> str:
    """``url`` with its password (user part) and secret query parameters replaced by ``***``.

    Text that is not a URL (a file path, a webcam index) is returned unchanged.

    Example:
        >>> redact_url("redis://u:pw@host:6379/0?password=pw&db=1")
        'redis://u:***@host:6379/0?password=***&db=1'
    """
    if not _URL_SCHEME.match(url):
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. a malformed IPv6 host: show the scheme only, never the rest
        return url.split("://", 1)[0] + "://" + REDACTED
    netloc = parts.netloc
    credentials, at, host = netloc.rpartition("@")
    if at and ":" in credentials:
        netloc = f"{credentials.split(':', 1)[0]}:{REDACTED}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(name.lower() in SECRET_PARAMETERS for name, _ in pairs):
            query = urlencode(
                [(name, REDACTED if name.lower() in SECRET_PARAMETERS else value) for name, value in pairs],
                safe="*",
            )
    return urlunsplit(parts._replace(netloc=netloc, query=query))
