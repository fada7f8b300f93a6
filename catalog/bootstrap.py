"""Wiring for the catalog process: the one place that connects to anything."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis.asyncio as redis
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.cache import ProductCache
from catalog.flusher import FlusherConfig, JournalFlusher
from catalog.keys import Keys
from catalog.metrics import FlusherMetrics, StockPathMetric
from catalog.models import dead_letters, metadata
from catalog.products import Catalog
from catalog.redis_stock import RedisStock
from catalog.reservations import StockEngine
from catalog.service import CatalogService
from catalog.settings import CatalogSettings
from catalog.sql_stock import SqlStock
from catalog.stock import Limits
from catalog.store import SqlProductStore
from mesh.bus.dead_letters import SqlDeadLetters
from mesh.bus.transport import EventTransport
from mesh.clock import utc_now
from mesh.db import create_engine, create_schema, ping
from mesh.process import new_app
from mesh.server import App, Registration
from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc

log = logging.getLogger(__name__)


@dataclass
class Parts:
    """The catalog's collaborators, shared by the server, the flusher and the auditor."""

    engine: AsyncEngine
    client: redis.Redis
    keys: Keys
    store: SqlProductStore
    redis_stock: RedisStock
    sql_stock: SqlStock

    async def close(self) -> None:
        await self.client.aclose()
        await self.engine.dispose()


async def build_parts(settings: CatalogSettings) -> Parts:
    engine = create_engine(settings.database_url)
    await create_schema(engine, metadata)
    store = SqlProductStore(engine)
    if settings.catalog_seed and (loaded := await store.seed_if_empty()):
        log.info("loaded %d seed products", loaded)
    client = redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
        max_connections=256,
    )
    keys = Keys(settings.catalog_key_prefix, settings.order_stream)
    return Parts(
        engine=engine,
        client=client,
        keys=keys,
        store=store,
        redis_stock=RedisStock(client, keys, settings.reservation_marker_ttl_seconds),
        sql_stock=SqlStock(engine),
    )


def build_flusher(parts: Parts, settings: CatalogSettings, metrics: FlusherMetrics | None = None) -> JournalFlusher:
    config = FlusherConfig(batch_size=settings.flusher_batch_size, claim_idle_ms=settings.flusher_claim_idle_ms)
    return JournalFlusher(parts.client, parts.keys, parts.sql_stock, clock=utc_now, config=config, metrics=metrics)


async def bootstrap(settings: CatalogSettings) -> App:
    app = new_app("catalog", settings)
    parts = await build_parts(settings)
    cache = ProductCache(parts.store.all_products, settings.product_cache_ttl_seconds)
    engine = StockEngine(
        parts.redis_stock,
        parts.sql_stock,
        cache,
        clock=utc_now,
        recovery_interval=settings.stock_recovery_interval_seconds,
        sql_only=settings.stock_path == "sql",
    )
    await engine.warm(list(await cache.all()))
    limits = Limits(settings.max_lines_per_order, settings.max_units_per_line)
    app.services.append(
        Registration(
            catalog_pb2_grpc.add_CatalogServiceServicer_to_server,
            CatalogService(Catalog(parts.store, cache.get_many), engine, limits),
            catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name,
        )
    )
    StockPathMetric(app.registry, engine)
    if settings.flusher_enabled:
        app.workers.append(build_flusher(parts, settings, FlusherMetrics(app.registry)))
    # Redis is not a readiness condition: without it reservations take the SQL path.
    app.readiness["database"] = lambda: ping(parts.engine)
    app.closers += [parts.close, engine.close]
    # On the rocketmq transport, the order stream is forwarded to its topic from here.
    transport = EventTransport(
        settings,
        parts.client,
        SqlDeadLetters(parts.engine, dead_letters),
        app.tracer,
        registry=app.registry,
        breaker_metrics=app.breaker_metrics,
    )
    app.closers.append(transport.close)
    app.workers += await transport.forwarders([settings.order_stream])
    return app
