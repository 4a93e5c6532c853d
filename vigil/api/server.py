"""The API served from a background thread: by ``vigil run`` (``api.enabled``), tests and benchmarks.

``vigil serve`` runs uvicorn in the foreground instead; here the caller keeps its own main
thread (the service's supervisor, a test) and stops the server when it is done.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
import uvicorn

from vigil.config import Settings
from vigil.errors import ConfigError

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
GRACE_S = 3
"""Seconds open requests get to finish when the server stops."""


class BackgroundApi:
    """The HTTP API on ``host:port`` in a thread of this process.

    Example:
        >>> with BackgroundApi(settings, port=0) as api:
        ...     httpx.get(f"{api.url}/api/v1/health")
    """

    def __init__(
        self,
        settings: Settings,
        client: redis.Redis | None = None,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        from vigil.api.app import create_app

        self.host = host or settings.api.host
        self._app = create_app(settings, client)
        config = uvicorn.Config(
            self._app,
            host=self.host,
            port=settings.api.port if port is None else port,
            log_level="warning",
            log_config=None,  # logging is the program's own
            timeout_graceful_shutdown=GRACE_S,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="vigil-api", daemon=True)

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server (the port it got, when asked for 0)."""
        sockets = [s for server in self._server.servers for s in server.sockets]
        port = sockets[0].getsockname()[1] if sockets else self._server.config.port
        return f"http://{self.host}:{port}"

    def start(self) -> BackgroundApi:
        """Start serving; returns once the server listens.

        Raises:
            ConfigError: It could not listen (the port is taken, the address is not this machine's).
        """
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                where = f"{self.host}:{self._server.config.port}"
                raise ConfigError(f"the API could not listen on {where}; is the port taken? set api.port")
            time.sleep(0.02)
        logger.info("API on %s/api/v1", self.url)
        return self

    def stop(self) -> None:
        """Stop serving: open requests (live streams too) end, and the thread with them."""
        self._app.state.vigil.live.close()  # live streams never end by themselves
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> BackgroundApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
