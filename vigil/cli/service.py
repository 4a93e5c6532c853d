"""The service's commands: ``vigil run``, ``worker``, ``demo``, ``events`` and ``status``."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vigil.config import Settings
from vigil.errors import ServiceRunningError, ServiceStartError, VigilError

if TYPE_CHECKING:
    import redis

    from streamer.events import Event
    from streamer.service import RunSummary
    from vigil.api.server import BackgroundApi

_EXIT_ERROR = 2
POLL_EVENTS_S = 0.2


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # `vigil run --config vigil.yaml` reads naturally: accept the option after these commands too.
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="YAML settings file")
    demo = commands.add_parser(
        "demo",
        parents=[config],
        help="the whole service on a generated video of two people (photos ship in PyPI packages)",
    )
    demo.add_argument("--json", action="store_true", help="print events as JSON lines")
    demo.set_defaults(handler=cmd_demo)

    run = commands.add_parser(
        "run", parents=[config], help="watch camera streams and publish who is seen (the service)"
    )
    run.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="RTSP/HTTP URL, video file or webcam index; without any, streamer.cameras from the config",
    )
    run.add_argument("--workers", type=int, help="worker processes (default: streamer.workers.count)")
    run.add_argument("--fps", type=float, help="frames per second to analyse per camera")
    run.add_argument(
        "--as-fast-as-possible", action="store_true", help="read files as fast as the workers keep up"
    )
    run.add_argument("--metrics-port", type=int, help="port of /metrics (default: streamer.metrics.port)")
    run.add_argument("--json", action="store_true", help="print events as JSON lines")
    run.add_argument("--quiet", action="store_true", help="do not print events")
    run.set_defaults(handler=cmd_run)

    worker = commands.add_parser(
        "worker",
        parents=[config],
        help="only analysis workers, joining a service on a shared Redis (REDIS_URL) to scale out",
    )
    worker.add_argument("--workers", type=int, help="worker processes (default: streamer.workers.count)")
    worker.add_argument("--metrics-port", type=int, help="port of /metrics (default: streamer.metrics.port)")
    worker.set_defaults(handler=cmd_worker, sources=[], fps=None, as_fast_as_possible=False)

    events = commands.add_parser("events", help="past and live recognition events")
    events.add_argument("--since", default=None, help="0 (everything), an ISO time, or a stream id")
    events.add_argument("--follow", action="store_true", help="keep printing new events")
    events.add_argument("--camera", help="only this camera")
    events.add_argument("--identity", help="only this person (name or identity id)")
    events.add_argument("--json", action="store_true", help="one JSON object per line")
    events.add_argument("--schema", action="store_true", help="print the events' JSON Schema and exit")
    events.set_defaults(handler=cmd_events)

    status = commands.add_parser("status", help="sources, workers, bus backlog and gallery version")
    status.add_argument("--json", action="store_true", help="as one JSON object")
    status.set_defaults(handler=cmd_status)


def _run_settings(args: argparse.Namespace, settings: Settings) -> Settings:
    from streamer.cameras import settings_for_run

    return settings_for_run(
        settings,
        args.sources,
        fps=args.fps,
        as_fast_as_possible=args.as_fast_as_possible,
        workers=args.workers,
        metrics_port=args.metrics_port,
    )


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    summary, _ = serve(_run_settings(args, settings), json_lines=args.json, quiet=args.quiet)
    if summary.start_refused is not None:
        raise ServiceStartError(summary.start_refused)
    if summary.lease_lost:
        raise ServiceRunningError(
            "another Vigil service took this Redis over while it was unreachable, so this one stopped; "
            "`vigil status` shows what runs there"
        )
    for camera in summary.failed_sources:
        print(f"vigil: error: camera {camera} failed; see the log above", file=sys.stderr)
    return _EXIT_ERROR if summary.failed_sources else 0


def serve(
    settings: Settings, *, json_lines: bool = False, quiet: bool = False
) -> tuple[RunSummary, list[Event]]:
    """Run the service until its files end or it is stopped, printing events as they come."""
    from streamer.events import newest_event_id
    from streamer.service import Supervisor
    from vigil.streams import connect_redis

    supervisor = Supervisor(settings, on_ready=lambda url: announce(supervisor.settings, url))
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: supervisor.stop())
    client = connect_redis(settings.redis, settings.home)
    printer = _EventPrinter(
        client, settings, json_lines, quiet, after=newest_event_id(client, settings.streamer.events)
    )
    api = _start_api(settings, client) if settings.api.enabled else None
    printer.start()
    try:
        summary = supervisor.run()
    finally:
        if api is not None:
            api.stop()
    printer.finish()
    return summary, printer.events


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from streamer.service import Supervisor

    settings = _run_settings(args, settings)
    if settings.redis.url is None:
        print(
            "vigil: note: no REDIS_URL: these workers serve the embedded Redis of this data directory only",
            file=sys.stderr,
        )
    supervisor = Supervisor(
        settings, on_ready=lambda url: announce(supervisor.settings, url), workers_only=True
    )
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: supervisor.stop())
    summary = supervisor.run()
    if summary.start_refused is not None:
        raise ServiceStartError(summary.start_refused)
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from streamer.demo import prepare

    print("Vigil demo: the service on a generated video of two people whose photos ship with")
    print("scikit-image (Eileen Collins) and matplotlib (Grace Hopper); nothing is downloaded.")
    demo, people = prepare(settings)
    print(f"enrolled {' and '.join(people)} in {demo.home}; the video is {demo.streamer.cameras[0].source}")
    summary, events = serve(demo, json_lines=args.json)
    recognized = {event.name for event in events if event.type.value == "recognized"}
    for person in people:
        print(f"  {person}: {'recognized' if person in recognized else 'NOT recognized'}")
    wrong = recognized - set(people)
    if wrong or summary.failed_sources:
        print(f"vigil: error: unexpected results: {sorted(str(w) for w in wrong) or summary.failed_sources}")
    return 0 if set(people) <= recognized and not wrong and not summary.failed_sources else 1


class _EventPrinter(threading.Thread):
    """Prints the run's events as they are published, and the last ones once the run ends."""

    def __init__(self, client: Any, settings: Settings, json_lines: bool, quiet: bool, after: str) -> None:
        super().__init__(daemon=True)
        self.client, self.settings, self.last = client, settings, after
        self.json_lines, self.quiet = json_lines, quiet
        self.done = threading.Event()
        self.events: list[Event] = []

    def run(self) -> None:
        # Polling, not a blocking XREAD: this thread must stop promptly when the run ends.
        while not self.done.wait(POLL_EVENTS_S):
            self._print_new()

    def finish(self) -> None:
        """Stop polling and print whatever was published after the last event printed."""
        if self.is_alive():
            self.done.set()
            self.join()
            self._print_new()

    def _print_new(self) -> None:
        """Print new events; while Redis is down, say nothing (the service logs it) and reconnect."""
        from vigil.streams import connect_redis

        try:
            self._read_new()
        except VigilError:
            try:  # the embedded server restarts on a new socket: a new connection finds it
                self.client = connect_redis(self.settings.redis, self.settings.home)
                self._read_new()
            except VigilError:
                return

    def _read_new(self) -> None:
        from streamer.events import read_events, stream_id_after

        for stream_id, event in read_events(
            self.client, self.settings.streamer.events, since=stream_id_after(self.last)
        ):
            if not self.quiet:
                _print_event(event, self.json_lines)
            self.events.append(event)
            self.last = stream_id


def announce(settings: Settings, url: str | None) -> None:
    """The start-up banner on stderr: the cameras (passwords hidden), the workers, the metrics URL."""
    from vigil.redact import redact_url

    cameras = ", ".join(
        f"{camera.name} ({redact_url(camera.source)})" for camera in settings.streamer.cameras
    )
    watching = f"watching {cameras}" if cameras else "serving the frame bus"
    workers = settings.streamer.workers
    print(
        f"vigil: {watching} with {workers.count} worker(s), {workers.torch_threads} thread(s) each",
        file=sys.stderr,
    )
    if url:
        print(f"vigil: metrics at {url}", file=sys.stderr)


def _start_api(settings: Settings, client: redis.Redis) -> BackgroundApi:
    """The HTTP API beside the service (``api.enabled``), on the service's Redis connection."""
    from vigil.api.server import BackgroundApi

    api = BackgroundApi(settings, client).start()
    print(f"vigil: API on {api.url}/api/v1 (docs: /api/v1/docs)", file=sys.stderr)
    return api


def _print_event(event: Any, json_lines: bool) -> None:
    if json_lines:
        print(event.to_json(), flush=True)
        return
    who = event.name or "unknown"
    score = f"{event.score:.3f}" if event.score is not None else "-"
    extra = f" after {event.duration_s:.1f} s" if event.duration_s is not None else ""
    print(
        f"{event.captured_at} {event.camera} {event.type.value:<11} {who} (score {score}, "
        f"track {event.track_id}, frame {event.frame}){extra}",
        flush=True,
    )


def cmd_events(args: argparse.Namespace, settings: Settings) -> int:
    from streamer.events import event_json_schema, follow_events, newest_event_id, read_events
    from vigil.streams import connect_redis

    if args.schema:
        print(json.dumps(event_json_schema(), indent=2))
        return 0
    client = connect_redis(settings.redis, settings.home)
    config = settings.streamer.events
    last = newest_event_id(client, settings.streamer.events)
    if args.since is not None or not args.follow:
        last = "0-0"
        for stream_id, event in read_events(client, config, args.since or "0", args.camera, args.identity):
            _print_event(event, args.json)
            last = stream_id
    if args.follow:
        for _, event in follow_events(client, config, after=last, camera=args.camera, identity=args.identity):
            _print_event(event, args.json)
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from streamer.status import service_status

    status = service_status(settings)
    if args.json:
        print(json.dumps(status.to_dict(), indent=2))
        return 0
    print(
        f"gallery version {status.gallery_version}; "
        f"bus: {status.bus_waiting} waiting, {status.bus_pending} pending"
    )
    print(f"  redis: {status.redis.describe()}")
    for version, size in status.gallery_models.items():
        print(f"  model {version}: {size.templates} template(s) of {size.people} person(s)")
    for name, source in sorted(status.sources.items()):
        frames, reason = source.get("frames", 0), source.get("reason", "")
        print(f"  camera {name}: {source['state']} ({frames} frames) {reason}")
    for name, beat in sorted(status.workers.items()):
        runs = f", {beat['detector']} + {beat['embedder']}" if "embedder" in beat else ""
        print(f"  worker {name}: {beat['frames']} frames, gallery version {beat['gallery_version']}{runs}")
    for name, lag in sorted(status.bridges.items()):
        print(f"  bridge {name}: {lag} event(s) behind")
    if not status.ever_ran:
        print("  no service has run here yet (start one with `vigil run`)")
    return 0
