"""``vigil bridge mqtt|webhooks``: one bridge in the foreground, until Ctrl-C or SIGTERM.

``vigil run`` starts the enabled bridges itself (``bridges.<name>.enabled``); these commands run
one on its own, e.g. on another machine that reaches the service's Redis. Each bridge reads the
events stream through its own consumer group, so do not run the same bridge twice at once (here
and in ``vigil run``): the two would share its pending events.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from pydantic import ValidationError

from vigil.config import Settings
from vigil.errors import ConfigError


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bridges = commands.add_parser(
        "bridge", help="relay events to MQTT (Home Assistant) or webhooks, in the foreground"
    ).add_subparsers(title="bridges", metavar="BRIDGE", required=True)
    mqtt = bridges.add_parser("mqtt", help="publish events to an MQTT broker (bridges.mqtt)")
    mqtt.add_argument(
        "--url",
        help="broker URL, mqtt://host:port or mqtts://host:port (default: bridges.mqtt.url)",
    )
    mqtt.set_defaults(handler=cmd_bridge_mqtt)
    webhooks = bridges.add_parser("webhooks", help="POST events to HTTP endpoints (bridges.webhooks)")
    webhooks.set_defaults(handler=cmd_bridge_webhooks)


def cmd_bridge_mqtt(args: argparse.Namespace, settings: Settings) -> int:
    from streamer.bridges.mqtt import run_mqtt_bridge
    from vigil.redact import redact_url

    if args.url is not None:
        settings = with_broker_url(settings, args.url)
    print(
        f"vigil: MQTT bridge to {redact_url(settings.bridges.mqtt.url)}, topics under "
        f"{settings.bridges.mqtt.topic_prefix}/ (Ctrl-C stops it)",
        file=sys.stderr,
    )
    return _run_until_stopped(run_mqtt_bridge, settings)


def cmd_bridge_webhooks(args: argparse.Namespace, settings: Settings) -> int:
    from streamer.bridges.webhooks import run_webhooks_bridge

    names = ", ".join(endpoint.name for endpoint in settings.bridges.webhooks.endpoints) or "no endpoints"
    print(f"vigil: webhooks bridge to {names} (Ctrl-C stops it)", file=sys.stderr)
    return _run_until_stopped(run_webhooks_bridge, settings)


def with_broker_url(settings: Settings, url: str) -> Settings:
    """``settings`` with ``bridges.mqtt.url`` set to ``url``, validated like the config file's.

    Raises:
        ConfigError: ``url`` is not a usable broker URL (one line, password hidden).
    """
    changed = settings.model_copy(deep=True)
    try:
        changed.bridges.mqtt.url = url  # validate_assignment: the same checks as the file's
    except ValidationError as exc:
        problems = "; ".join(str(error["msg"]).removeprefix("Value error, ") for error in exc.errors())
        raise ConfigError(f"--url: {problems}") from None
    return changed


def _run_until_stopped(run: Callable[[Settings, threading.Event], None], settings: Settings) -> int:
    """Run a bridge until it returns; SIGINT and SIGTERM ask it to stop (it finishes what is in flight)."""
    stop = threading.Event()

    def request_stop(number: int, frame: FrameType | None) -> None:
        if stop.is_set():  # a second Ctrl-C: stop waiting for the bridge
            raise KeyboardInterrupt
        print("vigil: stopping the bridge", file=sys.stderr)
        stop.set()

    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, request_stop)
    run(settings, stop)
    return 0
