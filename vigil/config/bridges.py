"""Bridge settings: the events stream relayed to an MQTT broker and to HTTP webhooks.

Both bridges read ``streamer.events.stream`` through a consumer group of their own and pass
each event through a ``BridgeFilter`` first (``bridges.filter``, or the bridge's or endpoint's
own ``filter``). Secrets (the broker's password, webhook signing secrets, and credentials in
URLs) are ``SecretStr`` or shown through ``vigil.redact``: never printed. Webhook URLs are shown
without their path and query (``redact_url(..., hide_path=True)``): those may be the secret.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import SplitResult, unquote, urlsplit

from pydantic import Field, SecretStr, field_serializer, field_validator, model_validator

from vigil.config.base import VigilModel
from vigil.redact import redact_url

BridgeEventType = Literal["recognized", "unknown", "track_ended"]
"""``streamer.events.EventType``'s values, spelled out: ``vigil/`` imports nothing of ``streamer/``."""

DEFAULT_TYPES: tuple[BridgeEventType, ...] = ("recognized", "unknown")
# Events older than this when a bridge reaches them (after an outage) are dropped and counted:
# an hour-old "Alice is at the door" misleads more than it informs. A year at most, so that a
# typo (`1e20`, `.inf`) is refused rather than taken as "replay forever".
DEFAULT_MAX_AGE_S = 3600.0
MAX_MAX_AGE_S = 365 * 24 * 3600.0
MQTT_DEFAULT_PORT = 1883
MQTTS_DEFAULT_PORT = 8883
# Endpoint names are metric labels and part of Redis keys.
ENDPOINT_NAME_PATTERN = r"^[a-z0-9_-]+$"
# MQTT topic levels are separated by "/"; "+" and "#" are wildcards, which a published topic may not hold.
_TOPIC_WILDCARDS = re.compile(r"[+#\x00]")


class BridgeFilter(VigilModel):
    """Which events a bridge (or one webhook endpoint) passes on; every condition must hold."""

    types: list[BridgeEventType] = Field(
        default_factory=lambda: list(DEFAULT_TYPES),
        min_length=1,
        description=(
            "Event types passed on: `recognized`, `unknown`, `track_ended`. Default: recognized and unknown "
            "(one message per visit; `track_ended` says when a track left)."
        ),
    )
    cameras: list[str] = Field(
        default_factory=list, description="Only events of these cameras (names). Empty: every camera."
    )
    people: list[str] = Field(
        default_factory=list,
        description=(
            "Only events naming one of these people (display names or identity ids); events of unknown "
            "faces name nobody, so they are left out once this is set. Empty: everyone, unknown faces too."
        ),
    )
    unknown_only: bool = Field(
        False,
        description=(
            "Only events of faces the gallery does not know (no identity): `unknown`, and `track_ended` of "
            "unknown tracks if `types` has it. Cannot be combined with `people`."
        ),
    )
    min_score: float | None = Field(
        None,
        ge=-1.0,
        le=1.0,
        description=(
            "Cosine similarity (higher = more certain) below which events naming a person are left out. "
            "Events of unknown faces pass (they have no match to score). Unset: no minimum."
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> BridgeFilter:
        if self.unknown_only and self.people:
            raise ValueError(
                "unknown_only and people exclude each other (unknown faces name nobody); drop one"
            )
        return self


class MqttTlsConfig(VigilModel):
    """TLS towards the broker (used with an `mqtts://` URL)."""

    ca_file: str | None = Field(
        None, description="PEM file of the CA that signed the broker's certificate. Unset: the system's CAs."
    )
    cert_file: str | None = Field(None, description="PEM client certificate, for brokers that ask for one.")
    key_file: str | None = Field(None, description="PEM private key of `cert_file`.")
    insecure: bool = Field(
        False,
        description=(
            "Accept any broker certificate and host name (testing only: anyone on the path can read and "
            "forge the messages)."
        ),
    )

    @model_validator(mode="after")
    def _key_with_cert(self) -> MqttTlsConfig:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file (the client certificate it belongs to)")
        return self

    @property
    def configured(self) -> bool:
        """Whether anything differs from the defaults."""
        return any((self.ca_file, self.cert_file, self.key_file, self.insecure))


class HomeAssistantConfig(VigilModel):
    """Home Assistant MQTT discovery."""

    enabled: bool = Field(
        False,
        description=(
            "Publish discovery entries (retained) so Home Assistant creates a presence sensor per enrolled "
            "person and per camera, and removes them when people are deleted or erased."
        ),
    )
    discovery_prefix: str = Field(
        "homeassistant",
        min_length=1,
        max_length=128,
        description="Home Assistant's discovery topic prefix (its `mqtt.discovery_prefix`).",
    )

    @field_validator("discovery_prefix")
    @classmethod
    def _topic(cls, value: str) -> str:
        return _check_topic_prefix(value)


class MqttBridgeConfig(VigilModel):
    """The MQTT bridge: events to a broker (`vigil bridge mqtt`, or a child of `vigil run`)."""

    enabled: bool = Field(False, description="`vigil run` starts the MQTT bridge as one of its processes.")
    url: str = Field(
        "mqtt://127.0.0.1:1883",
        description=(
            "Broker URL: `mqtt://host[:port]` (default port 1883) or `mqtts://host[:port]` for TLS (8883). "
            "`mqtt://user:password@host` is accepted; the password is never printed."
        ),
    )
    username: str | None = Field(None, description="User name at the broker (or in `url`). Unset: anonymous.")
    password: SecretStr | None = Field(None, description="Password at the broker (never printed).")
    client_id: str = Field(
        "vigil-bridge",
        min_length=1,
        max_length=128,
        description="MQTT client id; unique per broker (a second client with the same id evicts the first).",
    )
    topic_prefix: str = Field(
        "vigil",
        min_length=1,
        max_length=128,
        description=(
            "First level of every topic: `{prefix}/events`, `{prefix}/<camera>/<person-or-unknown>`, "
            "`{prefix}/<camera>/present`, `{prefix}/person/<name>`."
        ),
    )
    qos: Literal[0, 1, 2] = Field(
        1,
        description="MQTT quality of service of every message: 1 = at least once (the broker acknowledges).",
    )
    tls: MqttTlsConfig = Field(default_factory=MqttTlsConfig)
    home_assistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)
    max_age_s: float = Field(
        DEFAULT_MAX_AGE_S,
        gt=0.0,
        le=MAX_MAX_AGE_S,
        description=(
            "Seconds: events older than this when the bridge reaches them (the broker was down) are dropped "
            'and counted (`vigil_bridge_events_total{outcome="dropped"}`), not replayed. At most a year.'
        ),
    )
    filter: BridgeFilter | None = Field(
        None,
        description=(
            "Which events to publish; unset: `bridges.filter`. Retained presence follows its `cameras`, "
            "`people`, `unknown_only` and `min_score`; a `track_ended` always ends a track's presence, "
            "whatever `types` says."
        ),
    )

    @field_validator("url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        parts = _split_url(value, "broker URL")
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(
                f"broker URL {redact_url(value)!r} must start with mqtt:// or mqtts:// (TLS), "
                f"not {parts.scheme}://"
            )
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(
                f"broker URL {redact_url(value)!r} must be mqtt[s]://[user:password@]host[:port] only"
            )
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _topic(cls, value: str) -> str:
        return _check_topic_prefix(value)

    @field_serializer("url", when_used="json")
    def _hide_url_password(self, value: str) -> str:
        return redact_url(value)

    @model_validator(mode="after")
    def _consistent(self) -> MqttBridgeConfig:
        parts = urlsplit(self.url)
        if parts.username is not None and self.username is not None:
            raise ValueError("the user name is both in url and in username; keep one")
        if parts.password is not None and self.password is not None:
            raise ValueError("the password is both in url and in password; keep one")
        if self.tls.configured and parts.scheme != "mqtts":
            raise ValueError("tls is set but url is mqtt://; use mqtts:// for TLS")
        return self

    @property
    def host(self) -> str:
        """The broker's host name or address."""
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        """The broker's port: from ``url``, else 1883 (``mqtt``) or 8883 (``mqtts``)."""
        port = urlsplit(self.url).port  # validated in _broker_url
        return port if port is not None else MQTTS_DEFAULT_PORT if self.uses_tls else MQTT_DEFAULT_PORT

    @property
    def uses_tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    def credentials(self) -> tuple[str | None, str | None]:
        """``(username, password)`` from the fields or the URL (percent-decoded); None where unset."""
        parts = urlsplit(self.url)
        username = self.username if self.username is not None else _unquoted(parts.username)
        password = (
            self.password.get_secret_value() if self.password is not None else _unquoted(parts.password)
        )
        return username, password


class WebhookEndpoint(VigilModel):
    """One URL events are POSTed to."""

    name: str = Field(
        pattern=ENDPOINT_NAME_PATTERN,
        max_length=64,
        description="Unique name (`a-z`, `0-9`, `_`, `-`): the endpoint's metric label and log name.",
    )
    url: str = Field(
        description=(
            "`http://` or `https://` URL the event JSON is POSTed to. Shown (settings, logs, errors) as "
            "`scheme://host[:port]/***` only: its path and query may hold the secret (Home Assistant, "
            "Slack and Discord webhooks keep theirs in the path)."
        )
    )
    secret: SecretStr | None = Field(
        None,
        description=(
            "Signing key: each request carries `X-Vigil-Signature: sha256=<hex HMAC-SHA256 of the body>` "
            "made with it (never printed). Unset: requests are not signed."
        ),
    )
    filter: BridgeFilter | None = Field(
        None, description="Which events this endpoint gets; unset: `bridges.filter`."
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = _split_url(value, "webhook URL", hide_path=True)
        if parts.scheme not in ("http", "https"):
            raise ValueError(
                f"webhook URL {redact_url(value, hide_path=True)!r} must start with http:// or https://"
            )
        return value

    @field_serializer("url", when_used="json")
    def _hide_url_secrets(self, value: str) -> str:
        return redact_url(value, hide_path=True)

    @property
    def shown_url(self) -> str:
        """The URL as logs and messages show it: ``scheme://host[:port]/***`` (the path may be the secret)."""
        return redact_url(self.url, hide_path=True)


class WebhooksBridgeConfig(VigilModel):
    """The webhooks bridge: each event POSTed to HTTP endpoints (`vigil bridge webhooks`, or `vigil run`)."""

    enabled: bool = Field(
        False, description="`vigil run` starts the webhooks bridge as one of its processes."
    )
    endpoints: list[WebhookEndpoint] = Field(
        default_factory=list,
        description=(
            "Where events go: a list of `{name, url, secret, filter}`. A `url` is shown as "
            "`scheme://host[:port]/***` only (its path and query may be the secret), `secret` never."
        ),
    )
    timeout_s: float = Field(
        10.0,
        gt=0.0,
        le=300.0,
        description="Seconds an endpoint has to answer one request before it counts as failed.",
    )
    max_attempts: int = Field(
        8,
        ge=1,
        le=100,
        description=(
            "Tries per event and endpoint (with growing pauses between them); after the last failure the "
            "event is dropped for that endpoint and counted."
        ),
    )
    retry_queue_limit: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description=(
            "Events waiting for a retry, per endpoint; beyond it the oldest waiting one is dropped and "
            "counted."
        ),
    )
    max_age_s: float = Field(
        DEFAULT_MAX_AGE_S,
        gt=0.0,
        le=MAX_MAX_AGE_S,
        description=(
            "Seconds: events older than this when the bridge reaches them, or still waiting for a retry, are "
            "dropped and counted, not delivered. At most a year."
        ),
    )

    @field_validator("endpoints")
    @classmethod
    def _unique_names(cls, endpoints: list[WebhookEndpoint]) -> list[WebhookEndpoint]:
        names = [endpoint.name for endpoint in endpoints]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"endpoint names must be unique; {', '.join(repeated)} is used more than once")
        return endpoints

    @model_validator(mode="after")
    def _endpoints_when_enabled(self) -> WebhooksBridgeConfig:
        if self.enabled and not self.endpoints:
            raise ValueError("enabled, but no endpoints: list at least one {name, url} under endpoints")
        return self


class BridgesConfig(VigilModel):
    """Bridges that relay events to other systems: MQTT (Home Assistant, Node-RED, Frigate) and webhooks."""

    filter: BridgeFilter = Field(default_factory=BridgeFilter)
    mqtt: MqttBridgeConfig = Field(default_factory=MqttBridgeConfig)
    webhooks: WebhooksBridgeConfig = Field(default_factory=WebhooksBridgeConfig)

    @property
    def mqtt_filter(self) -> BridgeFilter:
        """The MQTT bridge's filter: its own, else ``filter``."""
        return self.mqtt.filter if self.mqtt.filter is not None else self.filter

    def endpoint_filter(self, endpoint: WebhookEndpoint) -> BridgeFilter:
        """A webhook endpoint's filter: its own, else ``filter``."""
        return endpoint.filter if endpoint.filter is not None else self.filter

    def enabled_bridges(self) -> list[str]:
        """Names of the bridges ``vigil run`` starts (``mqtt``, ``webhooks``)."""
        return [
            name
            for name, enabled in (("mqtt", self.mqtt.enabled), ("webhooks", self.webhooks.enabled))
            if enabled
        ]


def _split_url(value: str, what: str, *, hide_path: bool = False) -> SplitResult:
    shown = redact_url(value, hide_path=hide_path)
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError on a port that is not a number in 0-65535
    except ValueError:
        raise ValueError(f"{what} {shown!r} is malformed (bad host or port)") from None
    if port == 0:
        raise ValueError(f"{what} {shown!r} has port 0; give the server's port (1-65535)")
    if not parts.scheme or "://" not in value:
        raise ValueError(f"{what} {shown!r} is not a URL such as scheme://host:port")
    if not parts.hostname:
        raise ValueError(f"{what} {shown!r} has no host")
    if any(character.isspace() for character in value):
        raise ValueError(f"{what} {shown!r} holds white space")
    return parts


def _unquoted(value: str | None) -> str | None:
    return unquote(value) if value is not None else None


def _check_topic_prefix(value: str) -> str:
    if _TOPIC_WILDCARDS.search(value):
        raise ValueError(f"topic prefix {value!r} may not hold the MQTT wildcards + or #")
    if value.startswith("/") or value.endswith("/") or "//" in value:
        raise ValueError(f"topic prefix {value!r} may not start or end with / nor hold empty levels (//)")
    return value
