"""Wiring for the catalog process: the one place that connects to anything."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis.asyncio as redis
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.cache import ProductCache
from catalog.engine import StockEngine
from catalog.flusher import FlusherConfig, JournalFlusher
from catalog.keys import Keys
from catalog.ledger import Ledger
from catalog.metrics import FlusherMetrics, StockMetrics
from catalog.models import dead_letters, metadata, products
from catalog.products import Catalog
from catalog.quota import Quota, QuotaPolicy, Refiller
from catalog.redis_stock import RedisStock
from catalog.relay import StockOutboxRelay
from catalog.service import CatalogService
from catalog.settings import CatalogSettings
from catalog.sql_path import SqlPath
from catalog.stock import Limits
from catalog.store import SqlProductStore
from mesh.bus.dead_letters import SqlDeadLetters
from mesh.bus.transport import EventTransport, forwarder_breaker, rocket_client
from mesh.clock import utc_now
from mesh.db import create_engine, create_schema, ping, reading
from mesh.errors import StartupError
from mesh.lease import Lease
from mesh.process import new_app
from mesh.redis_pipe import RedisPipe
from mesh.redis_pool import connect_for, pipe_for_settings
from mesh.server import App, Registration
from mesh.storage_spans import trace_storage
from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc

log = logging.getLogger(__name__)


@dataclass
class Components:
    """The catalog's collaborators, shared by the server, the flusher, the auditor and reclaim."""

    engine: AsyncEngine
    client: redis.Redis
    keys: Keys
    store: SqlProductStore
    redis_stock: RedisStock
    ledger: Ledger
    sql_path: SqlPath
    pipe: RedisPipe | None = None  # the stock's pipelined connection, when it has one

    async def close(self) -> None:
        if self.pipe is not None:
            await self.pipe.close()
        await self.client.aclose()
        await self.engine.dispose()


async def build_components(settings: CatalogSettings) -> Components:
    engine = create_engine(settings.database_url)
    await create_schema(engine, metadata)
    await _require_quota_columns(engine)
    store = SqlProductStore(engine)
    if settings.catalog_seed and (loaded := await store.seed_if_empty()):
        log.info("loaded %d seed products", loaded)
    client = connect_for(settings)
    keys = Keys(settings.catalog_key_prefix, settings.order_stream)
    pipe = pipe_for_settings(client, settings)
    return Components(
        engine=engine,
        client=client,
        keys=keys,
        store=store,
        redis_stock=RedisStock(client, keys, settings.reservation_marker_ttl_seconds, pipe=pipe),
        ledger=Ledger(engine),
        sql_path=SqlPath(engine),
        pipe=pipe,
    )


async def _require_quota_columns(engine: AsyncEngine) -> None:
    """A database made before quota allocation has no `allocated` column, and
    create_all does not alter tables: say so instead of failing on every call."""
    try:
        async with reading(engine) as connection:
            await connection.execute(select(products.c.allocated, products.c.stranded).limit(1))
    except DBAPIError as error:
        raise StartupError(
            f"the catalog database predates quota allocation ({error.orig}); "
            "start from an empty one (`make clean` removes var/) or add products.allocated and products.stranded"
        ) from None


def build_flusher(
    parts: Components, settings: CatalogSettings, metrics: FlusherMetrics | None = None
) -> JournalFlusher:
    config = FlusherConfig(batch_size=settings.flusher_batch_size, claim_idle_ms=settings.flusher_claim_idle_ms)
    return JournalFlusher(parts.client, parts.keys, parts.ledger, clock=utc_now, config=config, metrics=metrics)


def quota_policy(settings: CatalogSettings) -> QuotaPolicy:
    return QuotaPolicy(
        low_water_seconds=settings.stock_low_water_seconds,
        min_refill=settings.stock_min_refill,
        max_refill=max(settings.stock_max_refill, settings.stock_min_refill),
        interval_seconds=settings.stock_refill_interval_seconds,
        inline_wait_seconds=settings.stock_inline_refill_wait_seconds,
    )


async def bootstrap(settings: CatalogSettings) -> App:
    app = new_app("catalog", settings)
    parts = await build_components(settings)
    app.components = parts
    trace_storage(app, engines=[parts.engine], clients=[parts.client], pipes=[parts.pipe])
    metrics = StockMetrics(app.registry)
    cache = ProductCache(parts.store.all_products, settings.product_cache_ttl_seconds)
    quota = Quota(
        parts.redis_stock,
        parts.ledger,
        quota_policy(settings),
        clock=utc_now,
        epoch_lease=Lease(parts.client, parts.keys.epoch_lease, 10_000),
        metrics=metrics,
    )
    engine = StockEngine(
        parts.redis_stock,
        parts.sql_path,
        parts.ledger,
        quota,
        cache,
        clock=utc_now,
        probe_interval=settings.stock_probe_interval_seconds,
        sql_only=settings.stock_path == "sql",
        metrics=metrics,
        tracer=app.tracer,
        events_stream=parts.keys.order_stream,
    )
    await engine.start()
    # A copy: the gauges are read by the metrics thread while the refiller updates the view.
    metrics.watch(lambda: engine.on_sql, lambda: list(quota.levels.values()))
    limits = Limits(settings.max_lines_per_order, settings.max_units_per_line)
    app.services.append(
        Registration(
            catalog_pb2_grpc.add_CatalogServiceServicer_to_server,
            CatalogService(Catalog(parts.store, cache.get_many), engine, limits, metrics),
            catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name,
        )
    )
    if settings.stock_path != "sql":
        app.workers.append(Refiller(quota))
    # Every replica relays the SQL path's OrderPlaced events, whatever path it is on.
    app.workers.append(
        StockOutboxRelay(
            parts.sql_path,
            parts.redis_stock,
            Lease(parts.client, parts.keys.relay_lease, 5000),
            metrics=metrics,
            tracer=app.tracer,
        )
    )
    if settings.flusher_enabled:
        app.workers.append(build_flusher(parts, settings, FlusherMetrics(app.registry)))
    app.readiness["stock"] = lambda: _can_reserve(parts)
    app.closers += [parts.close, engine.close]
    # On the rocketmq transport, the order stream is forwarded to its topic from here.
    transport = EventTransport(
        settings,
        parts.client,
        SqlDeadLetters(parts.engine, dead_letters),
        app.tracer,
        rocket=rocket_client(settings),
        breaker=forwarder_breaker(settings, app.breaker_metrics),
        registry=app.registry,
    )
    app.closers.append(transport.close)
    app.workers += await transport.forwarders([settings.order_stream])
    return app


async def _can_reserve(parts: Components) -> bool:
    """Readiness: reservations take Redis (the usual path) or SQL (the fallback
    while Redis is down), so either will do. Requiring SQL made health-checking
    clients stop calling a catalog that was selling its Redis allocation while
    MariaDB was down (the chaos scenario mariadb-stopped)."""
    return await parts.redis_stock.ping() or await ping(parts.engine)


async def bootstrap_flusher(settings: CatalogSettings) -> App:
    """The write-behind flusher as a process of its own (``python -m catalog
    flusher``): served like every process (health, metrics, one shutdown path),
    with no gRPC service of its own. Set GRPC_PORT and METRICS_PORT when it runs
    beside a catalog on one host."""
    app = new_app("catalog-flusher", settings)
    parts = await build_components(settings)
    app.workers.append(build_flusher(parts, settings, FlusherMetrics(app.registry)))
    app.readiness["database"] = lambda: ping(parts.engine)
    app.readiness["redis"] = parts.redis_stock.ping
    app.closers.append(parts.close)
    return app


def components(app: App) -> Components:
    """The catalog process's object graph, from the App its bootstrap built."""
    assert isinstance(app.components, Components), "not a catalog App"
    return app.components
