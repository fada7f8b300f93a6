"""A catalog under test: its own key prefix and streams on the shared Redis."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import func, select

from catalog.audit import Audit, audit, render
from catalog.bootstrap import Components, bootstrap, build_flusher, components
from catalog.flusher import JournalFlusher
from catalog.ledger import Level
from catalog.settings import CatalogSettings
from catalog.stock import RedisDown
from mesh.db import reading
from mesh.server import Server
from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ordermesh.common.v1 import common_pb2
from tests.support import serving


def catalog_settings(database_url: str, redis_url: str, **overrides: object) -> CatalogSettings:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    values: dict[str, object] = {
        "grpc_host": "127.0.0.1",
        "grpc_port": 0,
        "metrics_port": 0,
        "database_url": database_url,
        "redis_url": redis_url,
        "catalog_key_prefix": prefix,
        "order_stream": f"{prefix}:orders",
        "flusher_enabled": False,
        **overrides,
    }
    return CatalogSettings.model_validate(values)


@dataclass
class CatalogUnderTest:
    settings: CatalogSettings
    server: Server
    stub: catalog_pb2_grpc.CatalogServiceAsyncStub
    parts: Components
    redis: redis.Redis
    flusher: JournalFlusher

    async def reserve(self, order_id: str, *lines: tuple[str, int]) -> catalog_pb2.Reservation:
        return await self.stub.ReserveStock(
            catalog_pb2.ReserveStockRequest(
                order_id=order_id,
                items=[common_pb2.LineItem(product_id=p, quantity=q) for p, q in lines],
                draft=common_pb2.OrderDraft(user_id="u1", request_id=f"r-{order_id}"),
            )
        )

    async def stock(self, product_id: str) -> int:
        product = await self.stub.GetProduct(catalog_pb2.GetProductRequest(id=product_id))
        return int(product.stock)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.server.app.registry.get_sample_value(name, labels)

    async def set_stock(self, product_id: str, stock: int) -> None:
        await self.stub.SetStock(catalog_pb2.SetStockRequest(product_id=product_id, stock=stock))

    async def journal_length(self) -> int:
        return int(await self.redis.xlen(self.parts.keys.journal))

    async def stream(self, name: str) -> list[dict[bytes, bytes]]:
        entries: Any = await self.redis.xrange(name)
        return [fields for _id, fields in entries]

    async def journal(self) -> list[dict[bytes, bytes]]:
        return await self.stream(self.parts.keys.journal)

    async def placed_order_ids(self) -> list[str]:
        return [fields[b"order_id"].decode() for fields in await self.stream(self.parts.keys.order_stream)]

    async def sql_stock(self, product_id: str) -> int:
        return (await self.parts.ledger.levels([product_id]))[product_id].stock

    async def level(self, product_id: str) -> Level:
        return (await self.parts.ledger.levels([product_id]))[product_id]

    async def counter(self, product_id: str) -> int:
        epoch = await self.parts.redis_stock.epoch()
        assert epoch is not None
        return (await self.parts.redis_stock.counters(epoch, [product_id]))[product_id]

    async def audit(self) -> Audit:
        try:
            return await audit(self.parts.redis_stock, self.parts.ledger, self.parts.sql_path)
        except RedisDown:  # a pooled connection a Redis restart (or a healed partition) broke: once
            return await audit(self.parts.redis_stock, self.parts.ledger, self.parts.sql_path)

    async def command(self, *args: str) -> tuple[int, str]:
        """``python -m catalog ARGS`` on this catalog's database and Redis, as an operator runs it."""
        env = {
            **os.environ,
            "DATABASE_URL": self.settings.database_url,
            "REDIS_URL": self.settings.redis_url,
            "CATALOG_KEY_PREFIX": self.settings.catalog_key_prefix,
            "CATALOG_SEED": "false",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "catalog", *args, env=env, stdout=asyncio.subprocess.PIPE
        )
        output = (await process.communicate())[0].decode()
        return int(process.returncode or 0), output

    async def flush(self) -> int:
        """Run the flusher until idle; once more if Redis restarted under its pooled connection."""
        try:
            return await self.flusher.run_until_idle()
        except RedisConnectionError:
            return await self.flusher.run_until_idle()

    async def assert_clean(self) -> None:
        """The auditor at a quiet point: journal flushed first."""
        await self.flush()
        result = await self.audit()
        assert result.clean, render(result)

    async def count(self, table: object) -> int:
        async with reading(self.parts.engine) as connection:
            return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())  # type: ignore[arg-type]


@asynccontextmanager
async def running_catalog(settings: CatalogSettings) -> AsyncIterator[CatalogUnderTest]:
    app = await bootstrap(settings)
    parts = components(app)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        async with serving(app) as (server, channel):
            yield CatalogUnderTest(
                settings,
                server,
                catalog_pb2_grpc.CatalogServiceStub(channel),
                parts,
                client,
                build_flusher(parts, settings),
            )
    finally:
        await client.aclose()
