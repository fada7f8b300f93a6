"""Wiring for the gateway process: the one place that connects to anything."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date

import grpc
import redis.asyncio as redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from starlette.applications import Starlette

from gateway import openapi
from gateway.api import Api
from gateway.app import build_app
from gateway.feed import Feed
from gateway.health import Health
from gateway.metrics import GatewayMetrics
from gateway.pages import Pages
from gateway.ports import Mesh
from gateway.remote import DEPENDENCIES, RemoteMesh
from gateway.routes import operations
from gateway.settings import GatewaySettings
from gateway.sse import EventStreams, StreamTimes
from gateway.tail import StreamTail
from mesh.breaker import breakers_for
from mesh.clients import dependency_channels
from mesh.clock import utc_now
from mesh.process import new_app
from mesh.redis_pool import connect_for
from mesh.server import App
from mesh.tls import channel_credentials
from ordermesh.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ordermesh.checkout.v1 import checkout_pb2, checkout_pb2_grpc
from ordermesh.order.v1 import order_pb2, order_pb2_grpc

CATALOG = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"]
CHECKOUT = checkout_pb2.DESCRIPTOR.services_by_name["CheckoutService"]
ORDER = order_pb2.DESCRIPTOR.services_by_name["OrderService"]
ANALYTICS = analytics_pb2.DESCRIPTOR.services_by_name["AnalyticsService"]
VERSION = "1.0.0"


@dataclass
class Components:
    """Everything the gateway process is made of, built once by ``bootstrap``."""

    asgi: Starlette
    feed: Feed
    health: Health
    tail: StreamTail
    mesh: RemoteMesh
    client: redis.Redis
    metrics: GatewayMetrics


async def bootstrap(settings: GatewaySettings, *, today: Callable[[], date] = lambda: utc_now().date()) -> App:
    """The gateway: the HTTP app over the mesh's clients, the stream reader,
    readiness. ``app.components`` holds the object graph; ``gateway.server``
    serves it."""
    app = new_app("gateway", settings)
    client = connect_for(settings)
    credentials = channel_credentials(settings)
    addresses = {
        CATALOG: settings.catalog_address,
        CHECKOUT: settings.checkout_address,
        ORDER: settings.order_address,
        ANALYTICS: settings.analytics_address,
    }
    channels = dependency_channels(
        addresses,
        tracer=app.tracer,
        default_timeout=settings.client_deadline_seconds,
        credentials=credentials,
        health_check=settings.client_health_check,
    )
    mesh = RemoteMesh(
        catalog_pb2_grpc.CatalogServiceStub(channels[CATALOG.full_name]),
        checkout_pb2_grpc.CheckoutServiceStub(channels[CHECKOUT.full_name]),
        order_pb2_grpc.OrderServiceStub(channels[ORDER.full_name]),
        analytics_pb2_grpc.AnalyticsServiceStub(channels[ANALYTICS.full_name]),
        breakers_for(
            DEPENDENCIES,
            fail_max=settings.breaker_fail_max,
            reset_timeout=settings.breaker_reset_seconds,
            metrics=app.breaker_metrics,
        ),
        settings.place_order_deadline_seconds,
    )
    metrics = GatewayMetrics(app.registry)
    feed = Feed(settings.operator_ring_size, settings.operator_queue_size)
    tail = StreamTail(
        client,
        {settings.order_placed_stream: "placed", settings.order_status_stream: "status"},
        feed,
        batch_size=settings.events_batch_size,
        block_ms=settings.events_block_ms,
        metrics=metrics,
    )

    async def redis_ready() -> bool:
        return bool(await client.ping())

    app.readiness["redis"] = redis_ready
    for service, address in addresses.items():
        check, close = _answers_health(address, credentials)
        app.readiness[service.full_name.split(".")[1]] = check
        app.closers.append(close)
    health = Health(app.readiness, settings.readiness_interval_seconds)
    asgi = http_app(settings, mesh, feed, health, tracer=app.tracer, metrics=metrics, today=today)
    app.closers.append(client.aclose)
    for channel in channels.values():
        app.closers.append(lambda channel=channel: channel.close(grace=None))  # type: ignore[misc]
    app.components = Components(asgi, feed, health, tail, mesh, client, metrics)
    return app


def http_app(
    settings: GatewaySettings,
    mesh: Mesh,
    feed: Feed,
    health: Health,
    *,
    tracer: trace.Tracer,
    metrics: GatewayMetrics,
    today: Callable[[], date],
) -> Starlette:
    """The HTTP side over the mesh and the feed (tests pass fakes here)."""
    streams = EventStreams(
        mesh,
        feed,
        StreamTimes(settings.sse_keepalive_seconds, settings.order_wait_seconds, settings.order_poll_seconds),
        metrics,
    )
    api = Api(mesh, jaeger_ui_url=settings.jaeger_ui_url, max_body_bytes=settings.max_body_bytes, today=today)
    pages = Pages()
    table = operations(api, streams, health, pages)
    return build_app(
        table,
        openapi=openapi.document(table, VERSION),
        static=pages.static(),
        tracer=tracer,
        metrics=metrics,
        cors_origins=settings.allowed_origins,
    )


def _answers_health(
    address: str, credentials: grpc.ChannelCredentials | None
) -> tuple[Callable[[], Awaitable[bool]], Callable[[], Awaitable[None]]]:
    """A readiness check that ``address`` is reachable (its liveness answers
    SERVING), on a channel of its own: the probes are not traced (the API's
    channels make a span per call), and they do not share the API's breakers."""
    channel = (
        grpc.aio.insecure_channel(address) if credentials is None else grpc.aio.secure_channel(address, credentials)
    )
    stub = health_pb2_grpc.HealthStub(channel)

    async def check() -> bool:
        answer = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    async def close() -> None:
        await channel.close(grace=None)

    return check, close


def components(app: App) -> Components:
    """The gateway's object graph, from the App its bootstrap built."""
    assert isinstance(app.components, Components), "not a gateway App"
    return app.components
