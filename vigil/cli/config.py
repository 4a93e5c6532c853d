"""``vigil check-config``: the settings in force, or their reference."""

from __future__ import annotations

import argparse

from vigil.config import Settings


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = commands.add_parser("check-config", help="validate the settings and print them")
    check.add_argument("--docs", action="store_true", help="print the settings reference (Markdown) instead")
    check.set_defaults(handler=cmd_check_config)


def cmd_check_config(args: argparse.Namespace, settings: Settings) -> int:
    if args.docs:
        from vigil.config.docs import render_markdown

        print(render_markdown(), end="")
        return 0
    print(settings.redacted_json())
    return 0
