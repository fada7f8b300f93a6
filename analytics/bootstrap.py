"""Wiring for the analytics process: the one place that connects to anything."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import redis.asyncio as redis
from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncEngine

from analytics.handlers import OrderEvents
from analytics.models import applied_events, dead_letters, metadata
from analytics.reports import Reports
from analytics.service import AnalyticsService
from analytics.settings import AnalyticsSettings
from analytics.shards import SqlOrderShard
from analytics.store import SqlAnalyticsStore
from mesh.bus.dead_letters import SqlDeadLetters
from mesh.bus.redis_streams import StreamConsumer
from mesh.bus.transport import EventTransport, Route, consumer_config, rocket_client, stream_consumers
from mesh.clock import Clock, utc_now
from mesh.db import create_engine, create_schema, ping
from mesh.lease import Lease
from mesh.periodic import JobMetrics, PeriodicJob
from mesh.process import new_app
from mesh.redis_pool import connect_for
from mesh.retention import PRUNE_INTERVAL_SECONDS, Pruner
from mesh.server import App, Registration
from mesh.storage_spans import trace_storage
from ordermesh.analytics.v1 import analytics_pb2, analytics_pb2_grpc

PRUNE_LEASE_MS = 5_000  # renewed while a tick runs; between ticks another replica may take it


@dataclass
class Components:
    """Everything the analytics process is made of, built once by ``build_components``."""

    engine: AsyncEngine
    client: redis.Redis  # the streams on the embedded transport; failure reasons on rocketmq
    store: SqlAnalyticsStore
    clock: Clock

    def dead_letters(self) -> SqlDeadLetters:
        return SqlDeadLetters(self.engine, dead_letters)

    async def close(self) -> None:
        await self.client.aclose()
        await self.engine.dispose()


async def build_components(settings: AnalyticsSettings, clock: Clock = utc_now) -> Components:
    engine = create_engine(settings.database_url)
    await create_schema(engine, metadata)
    return Components(engine, connect_for(settings), SqlAnalyticsStore(engine), clock)


def order_shards(settings: AnalyticsSettings) -> list[SqlOrderShard]:
    """The order context's shard databases, for the backfill: only read, and no
    table is made there (a wrong URL fails instead of backfilling an empty shard)."""
    return [SqlOrderShard(create_engine(url)) for url in settings.order_shard_urls]


def routes(parts: Components, settings: AnalyticsSettings) -> list[Route]:
    """Both streams to the one handler, in this context's own group: made from
    ``settings.subscriptions()``, so the broker's topology and the consumers agree."""
    handler = OrderEvents(parts.store, parts.clock)
    return [Route(stream, group, handler) for stream, group in settings.subscriptions()]


def build_consumers(parts: Components, settings: AnalyticsSettings, tracer: trace.Tracer) -> list[StreamConsumer]:
    """The embedded transport's consumers (tests drive them directly)."""
    config = consumer_config(settings)
    return stream_consumers(parts.client, routes(parts, settings), parts.dead_letters(), tracer, config)


async def bootstrap(settings: AnalyticsSettings, *, clock: Clock = utc_now, workers: bool = True) -> App:
    """The analytics process: the gRPC service and (unless ``workers=False``, for
    tests that drive the consumers themselves) the consumers of both streams on
    the configured transport. ``app.components`` holds the object graph."""
    app = new_app("analytics", settings)
    parts = await build_components(settings, clock)
    app.components = parts
    trace_storage(app, engines=[parts.engine], clients=[parts.client])
    app.services.append(
        Registration(
            analytics_pb2_grpc.add_AnalyticsServiceServicer_to_server,
            AnalyticsService(Reports(parts.store)),
            analytics_pb2.DESCRIPTOR.services_by_name["AnalyticsService"].full_name,
        )
    )
    app.closers.append(parts.close)
    # Ready when the read model answers: the queries need the database only (a
    # broker or Redis outage makes the answers older, not wrong).
    app.readiness["database"] = lambda: ping(parts.engine)
    if not workers:
        return app
    transport = EventTransport(
        settings,
        parts.client,
        parts.dead_letters(),
        app.tracer,
        rocket=rocket_client(settings),
        consumer_config=consumer_config(settings),
        registry=app.registry,
    )
    app.closers.append(transport.close)
    app.workers += await transport.consumers(routes(parts, settings), settings.dead_letter_group)
    app.workers.append(
        PeriodicJob(
            "prune-applied",
            applied_events_pruner(parts, settings),
            interval=PRUNE_INTERVAL_SECONDS,
            lease=Lease(parts.client, "analytics-prune-applied", PRUNE_LEASE_MS),
            clock=clock,
            metrics=JobMetrics(app.registry),
        )
    )
    return app


def applied_events_pruner(parts: Components, settings: AnalyticsSettings) -> Pruner:
    """The read model's record of applied events, past the bus's redelivery horizon."""
    return Pruner([parts.engine], applied_events, timedelta(hours=settings.applied_events_retention_hours))


def components(app: App) -> Components:
    """The analytics process's object graph, from the App its bootstrap built."""
    assert isinstance(app.components, Components), "not an analytics App"
    return app.components
