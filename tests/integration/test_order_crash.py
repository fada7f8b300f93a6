"""SIGKILL, then SIGTERM, the order process mid-batch: it stops within its grace
period, and after a restart every order exists exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio as redis
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import func, select

from common.order_ids import mint
from mesh.bus import encode_fields
from mesh.bus.redis_streams import RedisPublisher
from mesh.db import create_engine, reading
from mesh.local.procs import RedisServer, free_port
from order.models import order_history, orders
from ordermesh.common.v1 import common_pb2
from ordermesh.events.v1 import events_pb2
from tests.support import eventually

COUNT = 2400
GRACE = 3


def placed(order_id: str, user_id: str) -> events_pb2.Envelope:
    occurred = Timestamp()
    occurred.FromDatetime(datetime.now(UTC))
    return events_pb2.Envelope(
        event_id=uuid.uuid4().hex,
        order_id=order_id,
        occurred_at=occurred,
        order_placed=events_pb2.OrderPlaced(
            draft=common_pb2.OrderDraft(user_id=user_id, request_id=order_id),
            items=[
                common_pb2.OrderItem(
                    product_id="sku-1001", quantity=1, unit_price=common_pb2.Money(currency_code="USD", units=1)
                )
            ],
            total=common_pb2.Money(currency_code="USD", units=1),
        ),
    )


async def test_sigkill_and_sigterm_mid_batch_lose_nothing_and_duplicate_nothing(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    prefix = uuid.uuid4().hex[:8]
    url = f"sqlite+aiosqlite:///{tmp_path / 'order-0.db'}"
    env = {
        **os.environ,
        "GRPC_HOST": "127.0.0.1",
        "METRICS_PORT": "0",
        "DATABASE_URLS": url,
        "REDIS_URL": redis_server.url,
        "ORDER_PLACED_STREAM": f"{prefix}:placed",
        "ORDER_UPDATES_STREAM": f"{prefix}:updates",
        "ORDER_STATUS_STREAM": f"{prefix}:status",
        "CONSUMER_GROUP": f"{prefix}-order",
        "CONSUMER_BATCH_SIZE": "25",
        "CONSUMER_CLAIM_IDLE_MS": "300",
        "LOG_LEVEL": "WARNING",
        "SHUTDOWN_GRACE_SECONDS": str(GRACE),
    }
    client = redis.Redis.from_url(redis_server.url)
    publisher = RedisPublisher(client)
    ids = [mint(f"user-{n % 13}", 1) for n in range(COUNT)]
    for order_id in ids:
        await publisher.publish(f"{prefix}:placed", encode_fields(placed(order_id, "user")))
    engine = create_engine(url)

    async def rows(table: object = orders) -> int:
        # A read transaction (`reading`): a plain connection would BEGIN IMMEDIATE,
        # and a test polling every 20 ms with SQLite's write lock starves the
        # order process's writers.
        try:
            async with reading(engine) as connection:
                return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - the schema may not exist yet
            return 0

    try:
        for round_ in range(2):
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "order", env={**env, "GRPC_PORT": str(free_port())}
            )
            already = await rows()

            async def progressed(already: int = already) -> bool:
                return await rows() >= already + 50

            try:
                await eventually(progressed, within=60, what=f"inserts in round {round_}")
                if round_ == 1:
                    # SIGTERM under load: every worker and in-flight call stops within
                    # one grace period; what was not acknowledged is redelivered.
                    started = time.monotonic()
                    process.send_signal(signal.SIGTERM)
                    assert await asyncio.wait_for(process.wait(), GRACE + 10) == 0
                    took = time.monotonic() - started
                    assert took <= GRACE + 1, f"stopped {took:.1f}s after SIGTERM (grace {GRACE}s)"
            finally:  # killed mid-batch, or cleaned up if the round failed: never left running
                if process.returncode is None:
                    process.send_signal(signal.SIGKILL)
                    await process.wait()
        assert await rows() < COUNT, "the stops should land before everything is in"

        survivor = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "order", env={**env, "GRPC_PORT": str(free_port())}
        )
        try:

            async def complete() -> bool:
                return await rows() == COUNT

            await eventually(complete, within=90, what="every order after the restart")
        finally:
            survivor.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(survivor.wait(), 30) == 0
        async with reading(engine) as connection:
            distinct = (await connection.execute(select(func.count(func.distinct(orders.c.order_id))))).scalar_one()
            stored = set((await connection.execute(select(orders.c.order_id))).scalars())
        assert distinct == COUNT and stored == set(ids)
        assert await rows(order_history) == COUNT, "one 'placed' history row per order: nothing inserted twice"
    finally:
        await engine.dispose()
        await client.aclose()
