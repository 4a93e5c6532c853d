"""The ``bridges`` settings: defaults, derived values, and one-line errors naming the setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import assert_one_line_error, run_vigil
from vigil.config import load_settings
from vigil.errors import ConfigError


def load_yaml(tmp_path: Path, text: str) -> object:
    config = tmp_path / "vigil.yaml"
    config.write_text(text)
    return load_settings(config, environ={})


@pytest.mark.parametrize(
    ("yaml_text", "fragments"),
    [
        # a webhook URL without a scheme and host
        (
            "bridges:\n  webhooks:\n    endpoints:\n      - {name: alerts, url: 'example.com/hook'}\n",
            ["bridges.webhooks.endpoints.0.url", "is not a URL"],
        ),
        # a webhook URL of another scheme
        (
            "bridges:\n  webhooks:\n    endpoints:\n      - {name: alerts, url: 'ftp://example.com/hook'}\n",
            ["bridges.webhooks.endpoints.0.url", "http:// or https://"],
        ),
        # a webhook URL whose port is not a number
        (
            "bridges:\n  webhooks:\n    endpoints:\n      - {name: alerts, url: 'http://host:port/x'}\n",
            ["bridges.webhooks.endpoints.0.url", "malformed"],
        ),
        # two endpoints with one name (their metrics and logs would mix)
        (
            "bridges:\n  webhooks:\n    endpoints:\n"
            "      - {name: alerts, url: 'http://a/x'}\n      - {name: alerts, url: 'http://b/x'}\n",
            ["bridges.webhooks.endpoints", "alerts is used more than once"],
        ),
        # an endpoint name that cannot be a metric label
        (
            "bridges:\n  webhooks:\n    endpoints:\n      - {name: 'My Alerts', url: 'http://a/x'}\n",
            ["bridges.webhooks.endpoints.0.name"],
        ),
        # webhooks enabled without anywhere to send events
        ("bridges:\n  webhooks:\n    enabled: true\n", ["bridges.webhooks", "no endpoints"]),
        # a broker URL of another scheme
        ("bridges:\n  mqtt:\n    url: 'http://broker:1883'\n", ["bridges.mqtt.url", "mqtt:// or mqtts://"]),
        # a broker URL without a host
        ("bridges:\n  mqtt:\n    url: 'mqtt://:1883'\n", ["bridges.mqtt.url", "has no host"]),
        # a broker URL with a port out of range
        ("bridges:\n  mqtt:\n    url: 'mqtt://broker:70000'\n", ["bridges.mqtt.url", "malformed"]),
        # a broker URL with a path (a topic does not go there)
        ("bridges:\n  mqtt:\n    url: 'mqtt://broker/vigil'\n", ["bridges.mqtt.url", "host[:port] only"]),
        # TLS files with a plain mqtt:// URL
        ("bridges:\n  mqtt:\n    tls: {ca_file: /etc/ca.pem}\n", ["bridges.mqtt", "use mqtts://"]),
        # the password both in the URL and in the field
        (
            "bridges:\n  mqtt:\n    url: 'mqtt://u:pw@broker'\n    password: other\n",
            ["bridges.mqtt", "password is both in url and in password"],
        ),
        # a topic prefix with a wildcard
        ("bridges:\n  mqtt:\n    topic_prefix: 'vigil/#'\n", ["bridges.mqtt.topic_prefix", "wildcards"]),
        # QoS beyond MQTT's three
        ("bridges:\n  mqtt:\n    qos: 3\n", ["bridges.mqtt.qos"]),
        # a filter for unknown faces and named people at once
        (
            "bridges:\n  filter: {unknown_only: true, people: [Ada]}\n",
            ["bridges.filter", "unknown_only and people exclude each other"],
        ),
        # an event type that does not exist
        ("bridges:\n  filter: {types: [seen]}\n", ["bridges.filter.types.0"]),
        # no event type at all
        ("bridges:\n  filter: {types: []}\n", ["bridges.filter.types"]),
        # a score outside cosine similarity's range
        ("bridges:\n  mqtt:\n    filter: {min_score: 2}\n", ["bridges.mqtt.filter.min_score"]),
        # an age of forever
        ("bridges:\n  mqtt:\n    max_age_s: .inf\n", ["bridges.mqtt.max_age_s"]),
    ],
)
def test_bad_bridge_settings_are_one_line_errors(
    tmp_path: Path, yaml_text: str, fragments: list[str]
) -> None:
    # when the settings are loaded
    with pytest.raises(ConfigError) as caught:
        load_yaml(tmp_path, yaml_text)
    # then one line names the setting and says what is wrong
    message = str(caught.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_defaults_and_derived_values(tmp_path: Path) -> None:
    settings = load_settings(environ={})
    bridges = settings.bridges
    # bridges are off until configured, and filter recognized and unknown events by default
    assert bridges.enabled_bridges() == []
    assert bridges.filter.types == ["recognized", "unknown"]
    assert (bridges.mqtt.host, bridges.mqtt.port, bridges.mqtt.uses_tls) == ("127.0.0.1", 1883, False)
    assert bridges.mqtt.credentials() == (None, None)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        # TLS picks its own default port
        ({"VIGIL_BRIDGES__MQTT__URL": "mqtts://broker.lan"}, ("broker.lan", 8883, True, None, None)),
        # credentials in the URL, percent-encoded
        (
            {"VIGIL_BRIDGES__MQTT__URL": "mqtt://ha:p%40ss@10.0.0.2:1884"},
            ("10.0.0.2", 1884, False, "ha", "p@ss"),
        ),
        # credentials in their own fields
        (
            {"VIGIL_BRIDGES__MQTT__USERNAME": "ha", "VIGIL_BRIDGES__MQTT__PASSWORD": "s3cret"},
            ("127.0.0.1", 1883, False, "ha", "s3cret"),
        ),
    ],
)
def test_broker_address_and_credentials(environ: dict[str, str], expected: tuple[object, ...]) -> None:
    mqtt = load_settings(environ=environ).bridges.mqtt
    assert (mqtt.host, mqtt.port, mqtt.uses_tls, *mqtt.credentials()) == expected


def test_enabled_bridges_are_listed() -> None:
    settings = load_settings(
        environ={
            "VIGIL_BRIDGES__MQTT__ENABLED": "true",
            "VIGIL_BRIDGES__WEBHOOKS__ENABLED": "true",
            "VIGIL_BRIDGES__WEBHOOKS__ENDPOINTS": '[{"name": "a", "url": "http://h/x"}]',
        }
    )
    assert settings.bridges.enabled_bridges() == ["mqtt", "webhooks"]


def test_check_config_never_prints_bridge_secrets(tmp_path: Path) -> None:
    # given a broker password in the URL, a webhook token in its URL and a signing secret
    config = tmp_path / "vigil.yaml"
    config.write_text(
        "bridges:\n"
        "  mqtt: {url: 'mqtt://ha:broker-pw@broker', enabled: true}\n"
        "  webhooks:\n"
        "    endpoints:\n"
        "      - {name: alerts, url: 'https://hooks.example/x?token=hook-token', secret: signing-secret}\n"
    )
    # when the settings are printed
    result = run_vigil("--config", str(config), "check-config", home=tmp_path)
    # then none of the secrets appears
    assert result.returncode == 0, result.stderr
    for secret in ("broker-pw", "hook-token", "signing-secret"):
        assert secret not in result.stdout, f"{secret} printed by check-config"
    assert "mqtt://ha:***@broker" in result.stdout


# A Home Assistant webhook: the id in its path is all it takes to trigger the automation.
HA_SECRET = "ha-webhook-id-0123"


def test_check_config_never_prints_a_webhook_url_s_path(tmp_path: Path) -> None:
    # given a webhook whose secret is its path (Home Assistant), and one with a token as user name
    config = tmp_path / "vigil.yaml"
    config.write_text(
        "bridges:\n"
        "  webhooks:\n"
        "    endpoints:\n"
        f"      - {{name: ha, url: 'http://ha:8123/api/webhook/{HA_SECRET}'}}\n"
        f"      - {{name: token, url: 'https://{HA_SECRET}x@hooks.example/x'}}\n"
    )
    # when the settings are printed
    result = run_vigil("--config", str(config), "check-config", home=tmp_path)
    # then only the scheme, host and port are shown
    assert result.returncode == 0, result.stderr
    assert HA_SECRET not in result.stdout + result.stderr, "the webhook's secret path is printed"
    shown = json.loads(result.stdout)["bridges"]["webhooks"]["endpoints"]
    assert [endpoint["url"] for endpoint in shown] == ["http://ha:8123/***", "https://***@hooks.example/***"]


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        # another scheme
        (f"ftp://ha:8123/api/webhook/{HA_SECRET}", "'ftp://ha:8123/***' must start with http:// or https://"),
        # a port that is not a number
        (f"http://ha:port/api/webhook/{HA_SECRET}", "'http://ha:port/***' is malformed"),
        # no scheme at all
        (f"ha:8123/api/webhook/{HA_SECRET}", "'ha:8123/***' is not a URL"),
        # white space in the path
        (f"http://ha:8123/api/webhook/{HA_SECRET} x", "'http://ha:8123/***' holds white space"),
    ],
)
def test_a_bad_webhook_url_is_refused_without_its_path(tmp_path: Path, url: str, fragment: str) -> None:
    # when a webhook URL is refused
    with pytest.raises(ConfigError) as caught:
        load_yaml(tmp_path, f"bridges:\n  webhooks:\n    endpoints:\n      - {{name: ha, url: '{url}'}}\n")
    # then the error shows the URL without its path
    message = str(caught.value)
    assert HA_SECRET not in message, message
    assert fragment in message, message


def test_check_config_reports_a_bad_bridge_setting_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "vigil.yaml"
    config.write_text("bridges:\n  mqtt:\n    url: 'tcp://broker:1883'\n")
    assert_one_line_error(
        run_vigil("--config", str(config), "check-config", home=tmp_path), "bridges.mqtt.url"
    )
