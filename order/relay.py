"""Relays the order outbox (OrderStatusChanged rows) to the bus.

Each row was written in the same transaction as the status change, so no
change is lost; a row is deleted only after its event is on the stream
(at-least-once; consumers are idempotent). One replica relays at a time
(a lease), so events leave roughly in commit order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from mesh.lease import Lease
from mesh.worker import LoopWorker
from order.ports import Publisher
from order.shards import Shards

log = logging.getLogger(__name__)
RELAY_LIMIT = 200  # outbox rows per shard and pass


class OutboxRelay(LoopWorker):
    def __init__(
        self, shards: Shards, publisher: Publisher, stream: str, lease: Lease, *, idle_seconds: float = 0.05
    ) -> None:
        super().__init__("order-outbox-relay")
        self._shards = shards
        self._publisher = publisher
        self._stream = stream
        self._lease = lease
        self._idle = idle_seconds

    async def stopped(self) -> None:
        with contextlib.suppress(Exception):
            await self._lease.release()

    async def run(self) -> None:
        while self.running:
            try:
                moved = await self.relay_once() if await self._lease.acquire() else 0
            except Exception as error:  # noqa: BLE001 - keep relaying after Redis/SQL hiccups; logged
                log.warning("outbox relay: %s", error)
                moved = 0
                await asyncio.sleep(1.0)
            if moved < RELAY_LIMIT:
                # Idle, or a short batch: let the next one gather what commits
                # meanwhile (one SELECT, XADD pipeline and DELETE for many rows).
                await asyncio.sleep(self._idle)

    async def relay_once(self, limit: int = RELAY_LIMIT) -> int:
        moved = 0
        for store in self._shards.stores:
            rows = await store.outbox(limit)
            if rows:
                events: list[dict[str, str | bytes]] = [
                    {"type": "OrderStatusChanged", "order_id": oid, "event": event} for _, oid, event in rows
                ]
                await self._publisher.publish_many(self._stream, events)
                await store.delete_outbox([row_id for row_id, _, _ in rows])
                moved += len(rows)
        return moved
