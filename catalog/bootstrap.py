"""Wiring for the catalog process: the one place that connects to anything."""

from __future__ import annotations

import logging

import redis.asyncio as redis

from catalog.models import metadata
from catalog.products import Catalog
from catalog.service import CatalogService
from catalog.settings import CatalogSettings
from catalog.store import SqlProductStore
from mesh.db import create_engine, create_schema, ping
from mesh.process import new_app
from mesh.server import App, Registration
from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc

log = logging.getLogger(__name__)


async def bootstrap(settings: CatalogSettings) -> App:
    app = new_app("catalog", settings)
    engine = create_engine(settings.database_url)
    await create_schema(engine, metadata)
    store = SqlProductStore(engine)
    if settings.catalog_seed and (loaded := await store.seed_if_empty()):
        log.info("loaded %d seed products", loaded)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)

    async def redis_ready() -> bool:
        return bool(await client.ping())

    app.services.append(
        Registration(
            catalog_pb2_grpc.add_CatalogServiceServicer_to_server,
            CatalogService(Catalog(store)),
            catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name,
        )
    )
    app.readiness["database"] = lambda: ping(engine)
    app.readiness["redis"] = redis_ready
    app.closers += [engine.dispose, client.aclose]
    return app
