"""``vigil``'s entry point: the parser of every command group, logging, and error handling.

Only this package reads argv and configures logging. Every ``VigilError`` ends as one line on
stderr (``vigil: error: ...``) and exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from vigil import __version__
from vigil.cli import api, bench, bridge, config, images, learning, people, service, train
from vigil.config import Settings, load_settings
from vigil.errors import VigilError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``vigil`` command; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    handler: Callable[[argparse.Namespace, Settings], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        settings = load_settings(args.config)
        return handler(args, settings)
    except VigilError as exc:
        print(f"vigil: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("vigil: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error worth a traceback.
        sys.stderr.close()
        return 0
    except OSError as exc:  # e.g. an unwritable --json location
        print(f"vigil: error: {exc.strerror or exc}: {exc.filename or ''}; check the path", file=sys.stderr)
        return EXIT_USAGE


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vigil", description="Streaming face recognition.")
    parser.add_argument("--version", action="version", version=f"vigil {__version__}")
    parser.add_argument(
        "--config", type=Path, default=None, help="YAML settings file (default: $VIGIL_CONFIG)"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    service.add_commands(commands)
    learning.add_commands(commands)
    train.add_commands(commands)

    images.add_commands(commands)
    people.add_commands(commands)
    config.add_commands(commands)
    api.add_commands(commands)
    bridge.add_commands(commands)
    bench.add_commands(commands)
    return parser


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
