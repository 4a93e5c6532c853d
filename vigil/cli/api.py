"""``vigil serve`` (the HTTP API) and ``vigil api-keys`` (who may call it)."""

from __future__ import annotations

import argparse
import datetime

from vigil.config import Settings

EXIT_ERROR = 2


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser("serve", help="the HTTP API (/api/v1, OpenAPI at /api/v1/docs)")
    serve.add_argument("--host", help="address to listen on (default: api.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: api.port, 8000)")
    serve.set_defaults(handler=cmd_serve)

    keys = commands.add_parser("api-keys", help="create, list or revoke API keys").add_subparsers(
        title="actions", metavar="ACTION", required=True
    )
    create = keys.add_parser("create", help="a new key; its token is printed once")
    create.add_argument("name", help="who or what will use it, e.g. `phone`")
    create.add_argument("--role", choices=["read", "admin"], default="read", help="admin may also change")
    create.set_defaults(handler=cmd_keys_create)
    keys.add_parser("list", help="every key's name, role and age (never tokens)").set_defaults(
        handler=cmd_keys_list
    )
    revoke = keys.add_parser("revoke", help="revoke a key: its token stops working at once")
    revoke.add_argument("name")
    revoke.set_defaults(handler=cmd_keys_revoke)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from vigil.api.app import create_app
    from vigil.api.server import GRACE_S
    from vigil.errors import ConfigError

    host = args.host or settings.api.host
    port = args.port if args.port is not None else settings.api.port
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a TCP port (1-65535)")
    app = create_app(settings)
    print(f"vigil: API on http://{host}:{port}/api/v1 (docs: /api/v1/docs)", flush=True)
    # Live streams never end by themselves: on Ctrl+C they get a few seconds, then are closed.
    uvicorn.run(
        app, host=host, port=port, log_level="warning", log_config=None, timeout_graceful_shutdown=GRACE_S
    )
    return 0


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from vigil.api.keys import ApiRole, KeyStore
    from vigil.streams import connect_redis

    key, token = KeyStore(connect_redis(settings.redis, settings.home)).create(args.name, ApiRole(args.role))
    print(f"created {key.role.value} key {key.name!r}; its token (shown only now, keep it secret):")
    print(token)
    return 0


def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    from vigil.api.keys import KeyStore
    from vigil.streams import connect_redis

    keys = KeyStore(connect_redis(settings.redis, settings.home)).list_keys()
    for key in keys:
        created = datetime.datetime.fromtimestamp(key.created_at, datetime.UTC).isoformat(timespec="seconds")
        print(f"{key.name}\t{key.role.value}\tcreated {created}")
    print(f"{len(keys)} key(s)")
    return 0


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from vigil.api.keys import KeyStore
    from vigil.errors import ConfigError
    from vigil.streams import connect_redis

    if not KeyStore(connect_redis(settings.redis, settings.home)).revoke(args.name):
        raise ConfigError(f"no API key named {args.name!r}; see `vigil api-keys list`")
    print(f"revoked {args.name}")
    return 0
