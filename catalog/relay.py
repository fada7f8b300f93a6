"""Publishes the OrderPlaced events of SQL-path reservations to the order stream.

It runs on every replica, always (not only while Redis is down: a replica
configured for the SQL path, or restarted on it, sells there too), and one
replica at a time relays (a lease), so events leave in commit order. Each
event is published by relay.lua together with the order's marker, exactly
once; the outbox row goes afterwards (a crash in between finds the marker and
only deletes the row).

If reserve.lua reserved the same order too (its reply was lost as Redis
failed and the retry went to SQL, or a retry reached Redis first), Redis's
reservation stands, since its OrderPlaced is already out: the SQL copy is
undone and never published. If the SQL copy had been released meanwhile, the
order is released on Redis too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from opentelemetry import trace

from catalog.metrics import StockMetrics
from catalog.redis_stock import RedisStock
from catalog.sql_path import RELEASED, SqlPath
from mesh.bus.tracing import REDIS, envelope_link, publishing
from mesh.lease import Lease
from mesh.worker import LoopWorker

log = logging.getLogger(__name__)


class StockOutboxRelay(LoopWorker):
    def __init__(
        self,
        sql_path: SqlPath,
        redis_stock: RedisStock,
        lease: Lease,
        *,
        idle_seconds: float = 0.2,
        batch_size: int = 200,
        metrics: StockMetrics | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        super().__init__("stock-outbox-relay")
        self._sql = sql_path
        self._redis = redis_stock
        self._lease = lease
        self._idle = idle_seconds
        self._batch_size = batch_size
        self._metrics = metrics
        self._tracer = tracer or trace.NoOpTracer()

    async def stopped(self) -> None:
        with contextlib.suppress(Exception):
            await self._lease.release()

    async def run(self) -> None:
        failing = False
        while self.running:
            try:
                moved = await self.relay_once() if await self._lease.acquire() else 0
                failing = False
            except Exception as error:  # noqa: BLE001 - Redis or SQL down: retry later; logged once
                if not failing:
                    log.warning("stock outbox relay: %s; retrying", error or type(error).__name__)
                failing, moved = True, 0
                await asyncio.sleep(1.0)
            if not moved:
                await asyncio.sleep(self._idle)

    async def relay_once(self) -> int:
        pending = await self._sql.pending(self._batch_size)
        if not pending:
            return 0
        done = []
        # One PRODUCER span for the batch, linked to each event's own (the reservation's).
        with publishing(self._tracer, REDIS, self._redis.keys.order_stream, count=len(pending)) as span:
            if span.is_recording():
                for row in pending:
                    if (link := envelope_link(row.event)) is not None:
                        span.add_link(link.context)
            for row in pending:
                outcome = await self._redis.relay(row.order_id, row.lines, row.event)
                if outcome == "DUP":
                    await self._undo(row.order_id)
                    continue
                done.append(row.id)
                if outcome == "OK" and self._metrics is not None:
                    self._metrics.relayed.inc()
        if done:
            await self._sql.published(done)
        return len(pending)

    async def _undo(self, order_id: str) -> None:
        log.warning("stock: %s was reserved on Redis and on SQL; undoing the SQL copy", order_id)
        undone = await self._sql.supersede(order_id)
        if undone is not None and undone.state == RELEASED:
            await self._redis.release(order_id)
        if self._metrics is not None:
            self._metrics.superseded.inc()
