"""The MQTT bridge's connection to its broker: connect, publish, and wait for the broker's acknowledgements.

One paho-mqtt client, driven from the bridge's one thread (its ``loop`` is called here; there
is no network thread), so what the bridge does and what the broker acknowledged never race.
:meth:`BrokerLink.publish` returns only once the broker has acknowledged every message
(PUBACK at QoS 1), riding out a lost connection: paho keeps the unacknowledged messages and
sends them again (flagged DUP) on the next connection, which :meth:`BrokerLink.connect` makes
with growing pauses (``vigil.retry``). A message is thus sent again only when the broker may
have got it but its acknowledgement was lost: consumers drop such a repeat by its event id.

Permanent problems are ``ConfigError``: a broker host name that does not resolve (at start-up;
later, a DNS failure is waited out like any outage), credentials the broker refuses (bad user
name or password, not authorised; at start-up too: later, a refusal is logged as an error once
per outage and waited out), unreadable TLS files or a certificate that does not verify.
The broker's password is never logged; the URL is shown through ``vigil.redact``.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from streamer import metrics
from streamer.bridges.mqtt_topics import OFFLINE
from vigil.config.bridges import MqttBridgeConfig
from vigil.errors import ConfigError
from vigil.redact import redact_url
from vigil.retry import Backoff, RetryPolicy
from vigil.stop import StopFlag, pause

logger = logging.getLogger(__name__)

BRIDGE = "mqtt"
TARGET = "broker"
# The broker drops a client silent for 1.5 keep-alives, and paho notices a dead broker after
# one unanswered ping: 30 s finds a broker that vanished without closing the socket in under a minute.
KEEPALIVE_S = 30
# How long a broker may take to answer CONNECT before the attempt counts as failed.
CONNACK_TIMEOUT_S = 10.0
# Reconnecting: 0.5 s after the first failure, doubling to at most 30 s (a broker restart takes
# about a second; a broker down for long is asked twice a minute). 60 s connected ends a streak.
RECONNECT_POLICY = RetryPolicy(initial_s=0.5, max_s=30.0, healthy_after_s=60.0)
# Messages sent before the first PUBACK comes back (paho's default is 20): a batch of events goes
# out without waiting a round trip per message.
MAX_INFLIGHT = 1000
# How long the last message ("offline") may take to be acknowledged when the bridge stops.
CLOSE_TIMEOUT_S = 2.0
_LOOP_STEP_S = 0.1
# CONNACK reason codes that no retry can fix (MQTT 5 numbering, which paho maps 3.1.1's to).
_BAD_CREDENTIALS = 134
_NOT_AUTHORISED = 135


@dataclass(frozen=True)
class Message:
    """One message to publish.

    Attributes:
        topic: Where.
        payload: The body; empty with ``retain`` clears the topic's retained message.
        retain: Whether the broker keeps it for later subscribers.
    """

    topic: str
    payload: str
    retain: bool = False


class BrokerLink:
    """The bridge's one connection to the broker (not thread-safe: one thread drives it).

    Args:
        config: ``bridges.mqtt``.
        status_topic: The availability topic: its last will is ``offline``, retained.

    Raises:
        ConfigError: A TLS file cannot be read.
    """

    def __init__(self, config: MqttBridgeConfig, status_topic: str) -> None:
        self.config = config
        self.shown_url = redact_url(config.url)
        self.connections = 0
        """Successful connections so far: a new one means the broker may have lost retained messages."""
        self._connack: ReasonCode | None = None
        self._done: set[int] = set()
        self._host_known = False
        self._ever_connected = False
        # A refusal of the credentials after the first connection is logged once per outage.
        self._refusal_logged = False
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            protocol=paho.MQTTv311,
            clean_session=True,
        )
        username, password = config.credentials()
        if username is not None or password is not None:
            client.username_pw_set(username or "", password)
        if config.uses_tls:
            _set_tls(client, config)
        client.will_set(status_topic, OFFLINE, qos=config.qos, retain=True)
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        self._client = client

    @property
    def connected(self) -> bool:
        return bool(self._client.is_connected())

    def connect(self, stop: StopFlag) -> bool:
        """Connect (or reconnect), waiting with back-off while the broker cannot be reached.

        Messages not yet acknowledged are sent again on the new connection.

        Returns:
            True once connected; False if ``stop`` was set first.

        Raises:
            ConfigError: The host does not resolve or the broker refuses the credentials (both only
                before the first connection ever), or its TLS certificate does not verify.
        """
        backoff = Backoff(RECONNECT_POLICY)
        while not stop.is_set():
            started = time.monotonic()
            reason = self._attempt(stop)
            if reason is None:
                backoff.succeeded()
                return True
            if stop.is_set():
                break
            metrics.BRIDGE_CONNECTED.labels(bridge=BRIDGE, target=TARGET).set(0)
            delay_s = backoff.failed(time.monotonic() - started)
            log = logger.warning if backoff.failures == 1 else logger.debug
            log("MQTT broker at %s: %s; retrying in %.1f s", self.shown_url, reason, delay_s)
            pause(stop, delay_s, _LOOP_STEP_S)
        return False

    def publish(self, messages: Sequence[Message], stop: StopFlag) -> bool:
        """Publish ``messages`` and wait until the broker has acknowledged every one.

        A connection lost meanwhile is made again (with back-off) and the unacknowledged
        messages go out again on it.

        Returns:
            True once all are acknowledged; False if ``stop`` was set first (some may not be).

        Raises:
            ConfigError: Reconnecting met a permanent problem (see :meth:`connect`).
        """
        waiting = {self._send(message): message for message in messages}
        while not waiting.keys() <= self._done:
            if stop.is_set():
                return False
            if not self.connected:
                if not self.connect(stop):
                    return False
                if self.config.qos == 0:  # paho sends QoS 1 and 2 messages again, not QoS 0 ones
                    waiting = {
                        mid if mid in self._done else self._send(message): message
                        for mid, message in waiting.items()
                    }
                continue
            self.service(_LOOP_STEP_S)
        self._done -= waiting.keys()
        return True

    def _send(self, message: Message) -> int:
        """Hand ``message`` to paho; its message id (``on_publish`` reports it once the broker has it)."""
        info = self._client.publish(
            message.topic, message.payload, qos=self.config.qos, retain=message.retain
        )
        return int(info.mid)

    def service(self, timeout_s: float = 0.0) -> None:
        """Let the client read and write (acknowledgements, keep-alive pings) for up to ``timeout_s``."""
        if not self.connected:
            return
        code = self._client.loop(timeout_s)
        if code != MQTTErrorCode.MQTT_ERR_SUCCESS:
            metrics.BRIDGE_CONNECTED.labels(bridge=BRIDGE, target=TARGET).set(0)
            logger.warning("lost the MQTT broker at %s: %s", self.shown_url, paho.error_string(code))

    def close(self, status_topic: str) -> None:
        """Say ``offline`` on the status topic (retained), briefly waiting for it, and disconnect."""
        if self.connected:
            info = self._client.publish(status_topic, OFFLINE, qos=self.config.qos, retain=True)
            deadline = time.monotonic() + CLOSE_TIMEOUT_S
            while self.connected and info.mid not in self._done and time.monotonic() < deadline:
                self._client.loop(_LOOP_STEP_S)
            self._client.disconnect()
        # paho closes its wake-up socket pair only when the client is deleted; the callbacks refer
        # back to this link, a cycle the garbage collector breaks in an order that leaves them open.
        self._client.on_connect = None
        self._client.on_publish = None
        metrics.BRIDGE_CONNECTED.labels(bridge=BRIDGE, target=TARGET).set(0)

    def _attempt(self, stop: StopFlag) -> str | None:
        """One connection attempt: None when connected, else why not (to retry later)."""
        self._connack = None
        try:
            if self._host_known:
                self._client.reconnect()
            else:
                self._client.connect(self.config.host, self.config.port, keepalive=KEEPALIVE_S)
        except socket.gaierror as exc:
            if not self._ever_connected:
                raise ConfigError(
                    f"unknown MQTT broker host {self.config.host!r} ({exc.strerror}); "
                    "fix bridges.mqtt.url (VIGIL_BRIDGES__MQTT__URL)"
                ) from None
            return f"cannot resolve {self.config.host!r} ({exc.strerror})"
        except ssl.SSLCertVerificationError as exc:
            raise ConfigError(
                f"the MQTT broker at {self.shown_url} has a TLS certificate that does not verify "
                f"({exc.verify_message}); set bridges.mqtt.tls.ca_file to the CA that signed it"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            self._host_known = True
            return str(exc) or type(exc).__name__
        self._host_known = True
        deadline = time.monotonic() + CONNACK_TIMEOUT_S
        while self._connack is None and not stop.is_set() and time.monotonic() < deadline:
            code = self._client.loop(_LOOP_STEP_S)
            if code != MQTTErrorCode.MQTT_ERR_SUCCESS and self._connack is None:
                return f"connection closed before the broker answered ({paho.error_string(code)})"
        connack = self._connack
        if connack is None:
            return "no answer to CONNECT" if not stop.is_set() else "stopping"
        if connack.is_failure:
            self._refuse(connack)
            return f"the broker refused the connection ({connack})"
        self._ever_connected = True
        self._refusal_logged = False
        self.connections += 1
        metrics.BRIDGE_CONNECTED.labels(bridge=BRIDGE, target=TARGET).set(1)
        logger.info("connected to the MQTT broker at %s", self.shown_url)
        return None

    def _refuse(self, connack: ReasonCode) -> None:
        """Raise ConfigError for refusals no retry can fix, the credentials, before the first connection.

        Once the bridge has connected, the same refusal (the broker's accounts were changed, or it
        restarted without them) is logged as an error once per outage and waited out like any other:
        the user can fix the broker without restarting ``vigil run``.

        MQTT 3.1.1 brokers (Mosquitto among them) answer a wrong password with "not authorised"
        as often as with "bad user name or password": both mean the same to the user.
        """
        if connack.value not in (_BAD_CREDENTIALS, _NOT_AUTHORISED):
            return
        username, _ = self.config.credentials()
        who = f"user {username!r}" if username else "an anonymous client (no user name set)"
        message = (
            f"the MQTT broker at {self.shown_url} refused {who} ({str(connack).lower()}): a wrong user name "
            "or password, or none where the broker wants one; fix bridges.mqtt.username/password "
            "(or user:password@ in bridges.mqtt.url)"
        )
        if not self._ever_connected:
            raise ConfigError(message)
        if not self._refusal_logged:
            self._refusal_logged = True
            logger.error("%s, or the broker's accounts; retrying meanwhile", message)

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        self._connack = reason

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Any
    ) -> None:
        self._done.add(mid)


def _set_tls(client: paho.Client, config: MqttBridgeConfig) -> None:
    tls = config.tls
    try:
        client.tls_set(
            ca_certs=tls.ca_file,
            certfile=tls.cert_file,
            keyfile=tls.key_file,
            cert_reqs=ssl.CERT_NONE if tls.insecure else ssl.CERT_REQUIRED,
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load the MQTT TLS files (bridges.mqtt.tls: ca_file, cert_file, key_file): {exc}"
        ) from None
    if tls.insecure:
        client.tls_insecure_set(True)
