"""Serving the gateway: uvicorn (httptools) on HTTP_PORT, /metrics on
METRICS_PORT, and the graceful stop on SIGTERM or SIGINT:

1. /readyz answers 503 ``draining`` (load balancers stop sending), while
   everything is still served, for SHUTDOWN_DELAY_SECONDS;
2. the SSE streams are closed (they never end by themselves; browsers
   reconnect, with Last-Event-ID, to another replica);
3. within one SHUTDOWN_GRACE_SECONDS deadline: uvicorn stops accepting and
   lets in-flight requests finish, and the stream reader (the process's one
   worker) stops;
4. clients are closed, telemetry flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
from collections.abc import Iterator
from typing import Any

import uvicorn

from gateway.bootstrap import components
from gateway.settings import GatewaySettings
from mesh.errors import StartupError
from mesh.metrics import serve_metrics
from mesh.server import App, release

log = logging.getLogger(__name__)


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: ``serve`` below drives the stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class GatewayServer:
    """A started gateway. ``start()`` binds the ports; ``stop()`` is the graceful sequence."""

    def __init__(self, app: App) -> None:
        assert isinstance(app.settings, GatewaySettings)
        self.app = app
        self.settings = app.settings
        self.parts = components(app)
        config = uvicorn.Config(
            self.parts.asgi,
            host=self.settings.http_host,
            port=self.settings.http_port,
            http="httptools",
            lifespan="off",
            log_config=None,  # the process's JSON logs (mesh.logs)
            access_log=False,
            server_header=False,
            # Whole seconds (uvicorn's type); in-flight requests get at least the grace.
            timeout_graceful_shutdown=math.ceil(self.settings.shutdown_grace_seconds),
        )
        self._uvicorn = _Uvicorn(config)
        self._serving: asyncio.Task[None] | None = None
        self._metrics_server: Any = None
        self._stopping = False

    @property
    def port(self) -> int:
        """The bound HTTP port (HTTP_PORT=0 binds a free one)."""
        servers = self._uvicorn.servers
        return int(servers[0].sockets[0].getsockname()[1]) if servers else 0

    async def start(self) -> None:
        settings = self.settings
        await self.parts.health.start()
        if settings.metrics_port:
            self._metrics_server = serve_metrics(self.app.registry, settings.metrics_port, settings.http_host)
        await self.parts.tail.start()
        self._serving = asyncio.create_task(self._uvicorn.serve(), name="gateway-http")
        while not self._uvicorn.started:
            if self._serving.done():  # could not bind (uvicorn logged why, and exits)
                failed, self._serving = self._serving, None
                with contextlib.suppress(BaseException):
                    await failed
                raise StartupError(f"cannot serve HTTP on {settings.http_host}:{settings.http_port}")
            await asyncio.sleep(0.01)
        log.info("gateway serving HTTP on port %d", self.port)

    async def __aenter__(self) -> GatewayServer:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        settings = self.settings
        log.info("gateway shutting down")
        self.parts.health.draining = True
        if settings.shutdown_delay_seconds:
            await asyncio.sleep(settings.shutdown_delay_seconds)
        self.parts.feed.close()
        self._uvicorn.should_exit = True
        # One deadline for both: uvicorn's for in-flight requests, the reader's grace.
        await asyncio.gather(
            *(self._serving,) if self._serving is not None else (),
            self.parts.tail.stop(settings.shutdown_grace_seconds),
        )
        await self.parts.health.stop()
        await release(self.app, self._metrics_server)
        log.info("gateway stopped")


async def serve(app: App) -> None:
    """Run the gateway until SIGTERM or SIGINT, then stop gracefully."""
    signalled = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signalled.set)
    async with GatewayServer(app):
        await signalled.wait()
