"""Wiring for the order process: the one place that connects to anything."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import grpc
import redis.asyncio as redis
from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncEngine

from mesh.breaker import breakers_for
from mesh.bus.dead_letters import SqlDeadLetters
from mesh.bus.redis_streams import RedisPublisher, StreamConsumer
from mesh.bus.tracing import REDIS, creating
from mesh.bus.transport import (
    EventTransport,
    Route,
    consumer_config,
    forwarder_breaker,
    rocket_client,
    stream_consumers,
)
from mesh.clients import dependency_channels
from mesh.clock import Clock, utc_now
from mesh.db import create_engine, create_schema, ping
from mesh.lease import Lease
from mesh.metrics import BreakerMetrics
from mesh.periodic import Job, JobMetrics, PeriodicJob
from mesh.process import new_app
from mesh.redis_pool import connect_for
from mesh.retention import PRUNE_INTERVAL_SECONDS, Pruner
from mesh.server import App, Registration
from mesh.storage_spans import trace_storage
from mesh.tls import channel_credentials
from order.events import status_changed
from order.handlers import Compensator, Dispatcher, PlacedOrders, StatusEvents
from order.lifecycle import Lifecycle, LifecycleConfig
from order.metrics import OrderMetrics, StatusCounts
from order.models import applied_events, dead_letters, metadata
from order.queries import OrderQueries
from order.relay import OutboxRelay
from order.remote import Remote
from order.service import OrderService
from order.settings import OrderSettings
from order.shards import Shards
from order.store import OrderStore
from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ordermesh.order.v1 import order_pb2, order_pb2_grpc
from ordermesh.payment.v1 import payment_pb2, payment_pb2_grpc
from ordermesh.shipping.v1 import shipping_pb2, shipping_pb2_grpc

CATALOG = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"]
SHIPPING = shipping_pb2.DESCRIPTOR.services_by_name["ShippingService"]
PAYMENT = payment_pb2.DESCRIPTOR.services_by_name["PaymentService"]


@dataclass
class Components:
    """Everything the order process is made of, built once by ``build_components``."""

    engines: list[AsyncEngine]
    shards: Shards
    client: redis.Redis
    publisher: RedisPublisher
    channels: list[grpc.aio.Channel]
    lifecycle: Lifecycle
    remote: Remote
    clock: Clock
    # The process's business metrics (None for operator commands, which count nothing).
    metrics: OrderMetrics | None = None

    def dead_letters(self) -> SqlDeadLetters:
        # Dead letters are kept in the first shard's database.
        return SqlDeadLetters(self.engines[0], dead_letters)

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close(grace=None)
        await self.client.aclose()
        for engine in self.engines:
            await engine.dispose()


async def build_components(
    settings: OrderSettings,
    tracer: trace.Tracer,
    breaker_metrics: BreakerMetrics | None = None,
    clock: Clock = utc_now,
    metrics: OrderMetrics | None = None,
) -> Components:
    engines = [create_engine(url) for url in settings.shard_urls]
    for engine in engines:
        await create_schema(engine, metadata)
    client = connect_for(settings)
    # Each OrderStatusChanged is made in a PRODUCER span of its own, the span its consumers link to.
    status_event = creating(status_changed, tracer, REDIS, settings.order_status_stream)
    shards = Shards([OrderStore(engine, status_event, metrics) for engine in engines])

    channels = dependency_channels(
        {CATALOG: settings.catalog_address, PAYMENT: settings.payment_address, SHIPPING: settings.shipping_address},
        tracer=tracer,
        default_timeout=settings.client_deadline_seconds,
        credentials=channel_credentials(settings),
        health_check=settings.client_health_check,
    )
    catalog, payment, shipping = channels[CATALOG.full_name], channels[PAYMENT.full_name], channels[SHIPPING.full_name]
    breakers = breakers_for(
        ("catalog", "payment", "shipping"),
        fail_max=settings.breaker_fail_max,
        reset_timeout=settings.breaker_reset_seconds,
        metrics=breaker_metrics,
    )
    remote = Remote(
        payment_pb2_grpc.PaymentServiceStub(payment),
        catalog_pb2_grpc.CatalogServiceStub(catalog),
        shipping_pb2_grpc.ShippingServiceStub(shipping),
        breakers,
    )
    config = LifecycleConfig(
        reconcile_after=timedelta(seconds=settings.reconcile_after_seconds),
        reconcile_backoff_max=timedelta(seconds=settings.reconcile_backoff_max_seconds),
        payment_window=timedelta(seconds=settings.order_timeout_seconds),
        review_timeout=timedelta(seconds=settings.order_timeout_seconds),
        ship_max_attempts=settings.ship_max_attempts,
        ship_backoff=timedelta(seconds=settings.ship_backoff_seconds),
        ship_claim_timeout=timedelta(seconds=settings.ship_claim_timeout_seconds),
        money_settle_after=timedelta(seconds=settings.money_settle_after_seconds),
        # By then an order that was stored has been paid or expired: a capture
        # still without one belongs to no order, ever.
        orphan_after=timedelta(seconds=settings.order_timeout_seconds + settings.money_settle_after_seconds),
        ship_concurrency=settings.ship_concurrency,
    )
    lifecycle = Lifecycle(
        shards,
        remote,
        clock,
        config,
        on_skip=metrics.skip if metrics is not None else None,
        on_money=metrics.money if metrics is not None else None,
        tracer=tracer,
    )
    publisher = RedisPublisher(client, tracer)
    return Components(
        engines, shards, client, publisher, [catalog, payment, shipping], lifecycle, remote, clock, metrics
    )


def routes(parts: Components, settings: OrderSettings) -> list[Route]:
    """Which handler consumes which stream, in which group (``settings.subscriptions()``
    lists the same pairs for the broker's topology; a unit test keeps them equal)."""
    return [
        Route(settings.order_placed_stream, settings.consumer_group, PlacedOrders(parts.shards, parts.clock)),
        Route(settings.order_updates_stream, settings.consumer_group, StatusEvents(parts.shards, parts.clock)),
        Route(settings.order_status_stream, "dispatcher", Dispatcher(parts.lifecycle)),
        Route(
            settings.order_status_stream,
            "compensator",
            Compensator(parts.remote, parts.metrics.money if parts.metrics is not None else None),
        ),
    ]


def build_consumers(parts: Components, settings: OrderSettings, tracer: trace.Tracer) -> list[StreamConsumer]:
    """The embedded transport's consumers (tests drive them directly)."""
    config = consumer_config(settings)
    return stream_consumers(parts.client, routes(parts, settings), parts.dead_letters(), tracer, config)


def build_jobs(parts: Components, settings: OrderSettings, metrics: JobMetrics | None = None) -> list[PeriodicJob]:
    every_tick = settings.worker_interval_seconds
    jobs: dict[str, tuple[Job, float]] = {
        "reconcile": (parts.lifecycle.reconcile, every_tick),
        "expire": (parts.lifecycle.expire, every_tick),
        "recover-shipping": (parts.lifecycle.recover, every_tick),
        "money": (parts.lifecycle.settle_money, every_tick),
        "money-orphans": (parts.lifecycle.refund_orphans, every_tick),
        "prune-applied": (applied_events_pruner(parts, settings), PRUNE_INTERVAL_SECONDS),
    }
    lease_ms = int(max(settings.worker_interval_seconds * 5, 5) * 1000)
    return [
        PeriodicJob(
            name,
            job,
            interval=interval,
            lease=Lease(parts.client, f"order-{name}", lease_ms),
            clock=utc_now,
            metrics=metrics,
        )
        for name, (job, interval) in jobs.items()
    ]


def applied_events_pruner(parts: Components, settings: OrderSettings) -> Pruner:
    """Every shard's record of applied status events, past the bus's redelivery horizon."""
    return Pruner(parts.engines, applied_events, timedelta(hours=settings.applied_events_retention_hours))


async def bootstrap(settings: OrderSettings, *, clock: Clock = utc_now, workers: bool = True) -> App:
    """The order process: every component, the gRPC service, and (unless
    ``workers=False``, for tests that drive consumers and jobs themselves) the
    consumers, forwarder, outbox relay and periodic jobs. ``app.components``
    holds the object graph."""
    app = new_app("order", settings)
    metrics = OrderMetrics(app.registry)
    job_metrics = JobMetrics(app.registry)  # each job adds its series when it is built
    parts = await build_components(settings, app.tracer, app.breaker_metrics, clock=clock, metrics=metrics)
    app.components = parts
    trace_storage(app, engines=parts.engines, clients=[parts.client])
    app.services.append(
        Registration(
            order_pb2_grpc.add_OrderServiceServicer_to_server,
            OrderService(OrderQueries(parts.shards), parts.lifecycle),
            order_pb2.DESCRIPTOR.services_by_name["OrderService"].full_name,
        )
    )
    app.closers.append(parts.close)
    for n, engine in enumerate(parts.engines):
        app.readiness[f"database-{n}"] = lambda engine=engine: ping(engine)  # type: ignore[misc]
    if not workers:
        return app
    transport = EventTransport(
        settings,
        parts.client,
        parts.dead_letters(),
        app.tracer,
        rocket=rocket_client(settings),
        breaker=forwarder_breaker(settings, app.breaker_metrics),
        consumer_config=consumer_config(settings),
        registry=app.registry,
    )
    app.closers.append(transport.close)
    app.workers += await transport.consumers(routes(parts, settings), settings.dead_letter_group)
    app.workers += await transport.forwarders([settings.order_status_stream])
    app.workers.append(
        OutboxRelay(
            parts.shards, parts.publisher, settings.order_status_stream, Lease(parts.client, "order-outbox", 5000)
        )
    )
    app.workers += build_jobs(parts, settings, job_metrics)
    app.workers.append(StatusCounts(parts.shards, metrics, settings.status_count_interval_seconds))
    return app


def components(app: App) -> Components:
    """The order process's object graph, from the App its bootstrap built."""
    assert isinstance(app.components, Components), "not an order App"
    return app.components
