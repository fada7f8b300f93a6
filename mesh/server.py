"""The process runtime: one gRPC server with health, reflection, middleware,
metrics and graceful shutdown, plus the workers and clients of the process.

A context's ``bootstrap()`` builds an :class:`App` (servicers, readiness
checks, workers, things to close) and ``serve(app)`` runs it until SIGTERM or
SIGINT:

1. health -> NOT_SERVING for every service (load balancers stop sending);
2. wait ``shutdown_delay_seconds`` (endpoints leave the Service, and clients
   that health-check this address stop sending to it), still serving;
3. within one ``shutdown_grace_seconds`` deadline, at the same time: stop
   accepting and drain in-flight calls, and stop every worker (each finishes
   its unit of work in hand; what it had not acknowledged is redelivered);
4. close clients, flush telemetry.

Why step 2 matters even without a load balancer: once ``server.stop()`` has
begun, gRPC core answers CANCELLED (not UNAVAILABLE, grpc/grpc#41785) every
call that reaches it before the client has processed the GOAWAY, and every call
it had received but not yet handed to a handler (a busy event loop leaves
some queued). Clients do not retry CANCELLED. Nothing in the server can turn
those into UNAVAILABLE: no handler runs for them. What works is that no call
arrives any more when the server stops: a client with client-side health
checking (``make_channel(health_check=...)``) sees NOT_SERVING within
milliseconds and stops sending here (a single-address channel fails its calls
fast with UNAVAILABLE, which it retries), so a short delay empties the
server's queue first. Calls that still arrive during the delay are served as
usual: answering them UNAVAILABLE instead made things worse, as every refused
call came back as a retry right when the server stopped (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, ProcessCollector

from mesh.metrics import BreakerMetrics, ServerMetrics, serve_metrics
from mesh.middleware import Middleware, WrappingServer
from mesh.settings import ServiceSettings
from mesh.tls import server_credentials
from mesh.worker import Worker

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

# Health service name whose status is readiness (dependencies up); the empty
# name "" is liveness (the process answers).
READINESS = "readiness"


ReadinessCheck = Callable[[], Awaitable[bool]]
Closer = Callable[[], Awaitable[None]]


@dataclass
class Registration:
    """One gRPC service: the generated ``add_XServicer_to_server`` and its servicer."""

    add: Callable[[Any, grpc.aio.Server], None]
    servicer: object
    full_name: str


@dataclass
class App:
    """Everything a process serves and owns, assembled by its bootstrap."""

    name: str
    settings: ServiceSettings
    tracer_provider: TracerProvider
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    services: list[Registration] = field(default_factory=list)
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)
    workers: list[Worker] = field(default_factory=list)
    closers: list[Closer] = field(default_factory=list)
    # The process's object graph as its bootstrap built it (each context's
    # ``Components``): tests and operator commands take what they need from
    # here instead of building a second one.
    components: Any = None

    def __post_init__(self) -> None:
        self.breaker_metrics = BreakerMetrics(self.registry)
        # CPU, memory and file descriptors of this process (process_*): the
        # library registers them only in its global registry, not in ours.
        ProcessCollector(registry=self.registry)

    @property
    def tracer(self) -> trace.Tracer:
        return self.tracer_provider.get_tracer(f"ordermesh.{self.name}")


class Server:
    """A started App. ``start()`` binds the port; ``stop()`` is the graceful sequence."""

    def __init__(self, app: App) -> None:
        self.app = app
        settings = app.settings
        # grpc-stubs predates the aio health servicer.
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        age_ms = int(settings.max_connection_age_seconds * 1000)
        self._server = grpc.aio.server(
            options=[
                *(
                    (("grpc.max_connection_age_ms", age_ms), ("grpc.max_connection_age_grace_ms", 30_000))
                    if age_ms
                    else ()
                ),
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                ("grpc.max_send_message_length", settings.max_message_bytes),
                # Several workers share the port (WORKERS); one worker never
                # shares it by accident with a leftover process.
                ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
                # C-core queues calls the Python server has not picked up yet and
                # cancels them beyond a pending limit (default 1000), below our own
                # in-flight cap: raise it to the cap, so bursts queue instead.
                ("grpc.server.max_pending_requests", settings.max_concurrent_rpcs),
                ("grpc.server.max_pending_requests_hard_limit", settings.max_concurrent_rpcs * 2),
            ],
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        )
        # Every service, health included, is registered through the middleware.
        # Typed Any: the generated add functions are typed for a grpc.Server, and call
        # only the two registration methods WrappingServer has.
        self._wrapping: Any = WrappingServer(self._server, Middleware(app.tracer, ServerMetrics(app.registry)))
        self.port = 0
        self._metrics_server: Any = None
        self._readiness_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_checks: dict[str, bool] = {}

    async def start(self) -> None:
        app, settings = self.app, self.app.settings
        for registration in app.services:
            registration.add(registration.servicer, self._wrapping)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._wrapping)
        names = [r.full_name for r in app.services]
        reflection.enable_server_reflection(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self._server,
        )
        address = f"{settings.grpc_host}:{settings.grpc_port}"
        credentials = server_credentials(settings)
        if credentials is None:
            self.port = self._server.add_insecure_port(address)
        else:
            self.port = self._server.add_secure_port(address, credentials)
        if self.port == 0:
            raise RuntimeError(f"cannot bind gRPC port {settings.grpc_host}:{settings.grpc_port}")
        if settings.metrics_port:
            port = settings.metrics_port + settings.worker_index  # one /metrics per worker
            self._metrics_server = serve_metrics(app.registry, port, settings.grpc_host)
        await self._server.start()
        await self.health.set("", SERVING)
        await self._refresh_readiness()
        self._readiness_task = asyncio.create_task(self._readiness_loop(), name="readiness")
        for worker in app.workers:
            await worker.start()
        log.info("%s serving gRPC on port %d", app.name, self.port)

    async def _refresh_readiness(self) -> None:
        ready = True
        for name, check in self.app.readiness.items():
            try:
                ok = await asyncio.wait_for(check(), timeout=self.app.settings.readiness_interval_seconds)
            except Exception:  # noqa: BLE001 - any failure of a probe means not ready
                ok = False
            if self._last_checks.get(name) != ok:  # log changes, not every probe
                log.log(logging.INFO if ok else logging.WARNING, "dependency %s is %s", name, "up" if ok else "down")
                self._last_checks[name] = ok
            ready = ready and ok
        if self._stopping:
            return
        status = SERVING if ready else NOT_SERVING
        for service in [READINESS, *(r.full_name for r in self.app.services)]:
            await self.health.set(service, status)

    async def _readiness_loop(self) -> None:
        while True:
            await asyncio.sleep(self.app.settings.readiness_interval_seconds)
            await self._refresh_readiness()

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        settings = self.app.settings
        log.info("%s shutting down", self.app.name)
        if self._readiness_task is not None:
            self._readiness_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._readiness_task
        await self.health.enter_graceful_shutdown()
        # Still serving: see the module's docstring for why calls must stop
        # arriving before the server stops.
        if settings.shutdown_delay_seconds:
            await asyncio.sleep(settings.shutdown_delay_seconds)
        # One deadline for everything: in-flight calls drain and every worker
        # finishes its unit of work at the same time, within the grace period.
        grace = settings.shutdown_grace_seconds
        await asyncio.gather(self._server.stop(grace), *(_stop(worker, grace) for worker in self.app.workers))
        await release(self.app, self._metrics_server)
        log.info("%s stopped", self.app.name)


async def _stop(worker: Worker, grace: float) -> None:
    try:
        await worker.stop(grace)
    except Exception:
        log.exception("worker %r failed to stop cleanly", worker)


async def serve(app: App) -> None:
    """Run ``app`` until SIGTERM or SIGINT, then shut down gracefully."""
    server = Server(app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        await stop.wait()
    finally:
        await server.stop()


async def release(app: App, metrics_server: Any) -> None:
    """What a stopped process still holds: its clients and pools (in the reverse
    of their making), its metrics port and its tracer (the last spans flushed)."""
    for close in reversed(app.closers):
        try:
            await close()
        except Exception:
            log.exception("closing %r failed", close)
    if metrics_server is not None:
        metrics_server.shutdown()
        metrics_server.server_close()  # shutdown() stops serving; this closes the port
    app.tracer_provider.shutdown()
