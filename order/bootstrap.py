"""Wiring for the order process: the one place that connects to anything."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as redis
from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncEngine

from mesh.bus.dead_letters import SqlDeadLetters
from mesh.bus.redis_streams import ConsumerConfig, RedisPublisher, StreamConsumer
from mesh.clock import utc_now
from mesh.db import create_engine, create_schema, ping
from mesh.lease import Lease
from mesh.process import new_app
from mesh.server import App, Registration
from order.consumers import PlacedOrders, StatusEvents
from order.events import status_changed
from order.models import dead_letters, metadata
from order.queries import OrderQueries
from order.relay import OutboxRelay
from order.service import OrderService
from order.settings import OrderSettings
from order.shards import Shards
from order.store import OrderStore
from ordermesh.order.v1 import order_pb2, order_pb2_grpc


@dataclass
class Parts:
    engines: list[AsyncEngine]
    shards: Shards
    client: redis.Redis
    publisher: RedisPublisher

    def dead_letters(self) -> SqlDeadLetters:
        # Dead letters are kept in the first shard's database.
        return SqlDeadLetters(self.engines[0], dead_letters)

    async def close(self) -> None:
        await self.client.aclose()
        for engine in self.engines:
            await engine.dispose()


async def build_parts(settings: OrderSettings) -> Parts:
    engines = [create_engine(url) for url in settings.shard_urls]
    for engine in engines:
        await create_schema(engine, metadata)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
    shards = Shards([OrderStore(engine, status_changed) for engine in engines])
    return Parts(engines, shards, client, RedisPublisher(client))


def build_consumers(parts: Parts, settings: OrderSettings, tracer: trace.Tracer) -> list[StreamConsumer]:
    config = ConsumerConfig(
        batch_size=settings.consumer_batch_size,
        max_attempts=settings.consumer_max_attempts,
        claim_idle_ms=settings.consumer_claim_idle_ms,
    )
    return [
        StreamConsumer(
            parts.client, stream, settings.consumer_group, handler, parts.dead_letters(), tracer=tracer, config=config
        )
        for stream, handler in (
            (settings.order_placed_stream, PlacedOrders(parts.shards, utc_now)),
            (settings.order_updates_stream, StatusEvents(parts.shards, utc_now)),
        )
    ]


async def bootstrap(settings: OrderSettings) -> App:
    app = new_app("order", settings)
    parts = await build_parts(settings)
    app.services.append(
        Registration(
            order_pb2_grpc.add_OrderServiceServicer_to_server,
            OrderService(OrderQueries(parts.shards)),
            order_pb2.DESCRIPTOR.services_by_name["OrderService"].full_name,
        )
    )
    app.workers += build_consumers(parts, settings, app.tracer)
    app.workers.append(
        OutboxRelay(
            parts.shards, parts.publisher, settings.order_status_stream, Lease(parts.client, "order-outbox", 5000)
        )
    )
    for n, engine in enumerate(parts.engines):
        app.readiness[f"database-{n}"] = lambda engine=engine: ping(engine)  # type: ignore[misc]
    app.closers.append(parts.close)
    return app
