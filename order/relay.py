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

from mesh.bus.redis_streams import RedisPublisher
from mesh.lease import Lease
from order.shards import Shards

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(
        self, shards: Shards, publisher: RedisPublisher, stream: str, lease: Lease, *, idle_seconds: float = 0.05
    ) -> None:
        self._shards = shards
        self._publisher = publisher
        self._stream = stream
        self._lease = lease
        self._idle = idle_seconds
        self._running = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._running = True
        self._task = asyncio.create_task(self._run(), name="order-outbox-relay")

    async def stop(self, grace: float = 5.0) -> None:
        self._running = False
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        with contextlib.suppress(Exception):
            await self._lease.release()

    async def _run(self) -> None:
        while self._running:
            try:
                moved = await self.relay_once() if await self._lease.acquire() else 0
            except Exception as error:  # noqa: BLE001 - keep relaying after Redis/SQL hiccups; logged
                log.warning("outbox relay: %s", error)
                moved = 0
                await asyncio.sleep(1.0)
            if not moved:
                await asyncio.sleep(self._idle)

    async def relay_once(self, limit: int = 200) -> int:
        moved = 0
        for store in self._shards.stores:
            rows = await store.outbox(limit)
            for _id, order_id, event in rows:
                await self._publisher.publish(
                    self._stream, {"type": "OrderStatusChanged", "order_id": order_id, "event": event}
                )
            if rows:
                await store.delete_outbox([row_id for row_id, _, _ in rows])
                moved += len(rows)
        return moved
