"""A periodic job that one replica at a time runs (it holds a lease in Redis).

The lease is renewed while a tick runs (every third of its time to live); a
replica that cannot renew it (it lost it: a pause, a partition) stops its
tick at once, so a tick slower than the lease never runs on two replicas.
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


class LeaseLost(Exception):
    """Another replica may hold the lease now: this one stopped its tick."""


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
        tick = asyncio.ensure_future(self._job(self._clock()))
        try:
            while True:
                done, _ = await asyncio.wait({tick}, timeout=self._lease.ttl_ms / 3000)
                if done:
                    return tick.result()
                if not await self._lease.acquire():  # renews it while it is ours
                    raise LeaseLost(f"{self.name}: lease lost during a tick; stopped it")
        finally:
            if not tick.done():
                tick.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await tick

    async def run(self) -> None:
        while self.running:
            try:
                done = await self.run_once()
                if done:
                    log.info("%s: handled %d orders", self.name, done)
            except Exception as error:  # noqa: BLE001 - the next tick retries; logged
                log.warning("%s: %s", self.name, error)
            await asyncio.sleep(self._interval)
