"""A periodic job that one replica at a time runs (it holds a lease in Redis).

The job receives "now" from an injectable clock, so tests drive time instead
of sleeping through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from mesh.clock import Clock
from mesh.lease import Lease
from mesh.worker import LoopWorker

log = logging.getLogger(__name__)

Job = Callable[[datetime], Awaitable[int]]


class PeriodicJob(LoopWorker):
    def __init__(self, name: str, job: Job, *, interval: float, lease: Lease, clock: Clock) -> None:
        super().__init__(f"periodic:{name}")
        self._job = job
        self._interval = interval
        self._lease = lease
        self._clock = clock

    async def stopped(self) -> None:
        with contextlib.suppress(Exception):
            await self._lease.release()

    async def run_once(self) -> int:
        """One tick, if this replica holds the lease; returns the job's count of work done."""
        if not await self._lease.acquire():
            return 0
        return await self._job(self._clock())

    async def run(self) -> None:
        while self.running:
            try:
                done = await self.run_once()
                if done:
                    log.info("%s: handled %d orders", self.name, done)
            except Exception as error:  # noqa: BLE001 - the next tick retries; logged
                log.warning("%s: %s", self.name, error)
            await asyncio.sleep(self._interval)
