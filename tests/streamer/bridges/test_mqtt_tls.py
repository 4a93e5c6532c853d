"""The MQTT bridge over TLS (``mqtts://``) to a real Mosquitto with a certificate from a test CA.

The CA and the broker's certificate (for 127.0.0.1) are made by the ``openssl`` command line in the
test's directory; without it the tests skip.
"""

from __future__ import annotations

import gc
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion

from tests.streamer.bridges.conftest import MosquittoBroker
from tests.streamer.bridges.test_mqtt import BridgeThread, ensure_group, namespace_of
from vigil.config import Settings

pytestmark = pytest.mark.redis

WAIT_S = 10.0


class TlsBroker(MosquittoBroker):
    """A Mosquitto whose one listener speaks TLS with the certificate in ``directory``."""

    def _write_config(self) -> Path:
        config = super()._write_config()
        tls = [
            f"cafile {self.directory / 'ca.crt'}",
            f"certfile {self.directory / 'server.crt'}",
            f"keyfile {self.directory / 'server.key'}",
        ]
        config.write_text(config.read_text() + "\n".join(tls) + "\n")
        return config

    @property
    def url(self) -> str:
        return f"mqtts://{self.host}:{self.port}"


def make_certificates(directory: Path) -> None:
    """A CA, and a certificate it signs for 127.0.0.1 (what the bridge connects to)."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make the test certificates")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
            "-days", "1", "-subj", "/CN=vigil-test-ca")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "1", "-extfile", "san.ext")  # fmt: skip


@pytest.fixture
def tls_broker(tmp_path: Path) -> Callable[[], TlsBroker]:
    """Start a TLS broker (killed at teardown by the test)."""
    directory = tmp_path / "tls-broker"
    directory.mkdir()
    make_certificates(directory)
    return lambda: TlsBroker(directory)


def tls_settings(settings: Settings, broker: TlsBroker, ca_file: Path | None) -> Settings:
    mqtt = settings.bridges.mqtt.model_validate(
        {
            "enabled": True,
            "url": broker.url,
            "client_id": f"vigil-tls-{broker.port}",
            "tls": {"ca_file": str(ca_file) if ca_file else None},
        }
    )
    return settings.model_copy(update={"bridges": settings.bridges.model_copy(update={"mqtt": mqtt})})


def status_over_tls(broker: TlsBroker) -> bytes | None:
    """The retained ``vigil/bridge/status`` as a TLS client verifying the broker sees it."""
    probe = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    probe.tls_set(ca_certs=str(broker.directory / "ca.crt"), cert_reqs=ssl.CERT_REQUIRED)
    got: list[bytes] = []
    done = threading.Event()

    def record(_client: paho.Client, _data: object, message: paho.MQTTMessage) -> None:
        got.append(bytes(message.payload))
        done.set()

    probe.on_message = record
    probe.connect(broker.host, broker.port)
    probe.subscribe("vigil/bridge/status", 1)
    deadline = time.monotonic() + 1.0
    while not done.is_set() and time.monotonic() < deadline:
        probe.loop(0.05)
    probe.disconnect()
    return got[-1] if got else None


def test_the_bridge_connects_over_tls_with_the_brokers_ca(
    tls_broker: Callable[[], TlsBroker], bridge_settings: Settings
) -> None:
    # given a TLS broker and the bridge with the CA that signed its certificate
    broker = tls_broker()
    broker.start()
    try:
        settings = tls_settings(bridge_settings, broker, broker.directory / "ca.crt")
        client = redis.Redis.from_url(str(settings.redis.url))
        ensure_group(settings, client)
        client.close()
        # when it runs, then a TLS client sees it online
        with BridgeThread(settings, namespace_of(settings)):
            deadline = time.monotonic() + WAIT_S
            while status_over_tls(broker) != b"online":
                assert time.monotonic() < deadline, f"the bridge never came online over TLS:\n{broker.log()}"
    finally:
        broker.stop()


# paho-mqtt 2.2 leaves the socket of a failed TLS handshake unclosed (Client._ssl_wrap_socket); the
# garbage collector closes it, with a ResourceWarning that is paho's, not the bridge's.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_broker_certificate_that_does_not_verify_is_a_one_line_error(
    tls_broker: Callable[[], TlsBroker], bridge_settings: Settings
) -> None:
    # given a TLS broker whose CA the bridge does not know (the system's CAs only)
    broker = tls_broker()
    broker.start()
    try:
        settings = tls_settings(bridge_settings, broker, None)
        # when the bridge starts, then it stops with one line pointing at tls.ca_file
        bridge = BridgeThread(settings, namespace_of(settings))
        bridge._thread.start()
        error = bridge.join()
        assert error is not None and "tls.ca_file" in str(error) and "\n" not in str(error), repr(error)
        del error, bridge
        gc.collect()  # paho's unclosed socket is collected here, under this test's warning filter
    finally:
        broker.stop()
