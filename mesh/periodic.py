"""A periodic job that one replica at a time runs (it holds a lease in Redis).

The lease is renewed while a tick runs (every third of its time to live); a
replica that cannot renew it (it lost it: a pause, a partition) stops its
tick at once, so a tick slower than the lease never runs on two replicas.
The job receives "now" from an injectable clock, so tests drive time instead
of sleeping through it.

Each tick is counted by outcome (``ordermesh_job_runs_total{job, outcome}``)
and a finished one stamps ``ordermesh_job_last_success_timestamp_seconds{job}``
(wall time, whatever the injected clock says: alerts compare it with time()).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge

from mesh.clock import Clock
from mesh.lease import Lease
from mesh.worker import LoopWorker

log = logging.getLogger(__name__)

Job = Callable[[datetime], Awaitable[int]]


class LeaseLost(Exception):
    """Another replica may hold the lease now: this one stopped its tick."""


# A tick's outcome: it finished; it raised; another replica holds the lease (this
# one did nothing); it lost the lease mid-tick and was stopped.
OUTCOMES = ("ok", "failed", "not_leader", "lease_lost")


class JobMetrics:
    """One per registry, shared by every periodic job of the process."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter(
            "ordermesh_job_runs",
            "Ticks of a periodic job on this replica, by outcome: ok (finished), failed (raised; logged), "
            "not_leader (another replica holds the job's lease: nothing done), lease_lost (lost the lease "
            "mid-tick: stopped).",
            ["job", "outcome"],
            registry=registry,
        )
        self.last_success = Gauge(
            "ordermesh_job_last_success_timestamp_seconds",
            "Unix time a tick of the job last finished on this replica (0: never here; replicas not holding "
            "the lease stay behind: aggregate with max).",
            ["job"],
            registry=registry,
        )

    def register(self, job: str) -> None:
        """Every series of ``job`` from the start, so a job that never ran shows zeros, not gaps."""
        for outcome in OUTCOMES:
            self.runs.labels(job, outcome)
        self.last_success.labels(job)


class PeriodicJob(LoopWorker):
    def __init__(
        self, name: str, job: Job, *, interval: float, lease: Lease, clock: Clock, metrics: JobMetrics | None = None
    ) -> None:
        super().__init__(f"periodic:{name}")
        self.job_name = name
        self._job = job
        self._interval = interval
        self._lease = lease
        self._clock = clock
        self._metrics = metrics
        if metrics is not None:
            metrics.register(name)

    async def stopped(self) -> None:
        with contextlib.suppress(Exception):
            await self._lease.release()

    async def run_once(self) -> int:
        """One tick, if this replica holds the lease; returns the job's count of work done."""
        try:
            done = await self._tick()
        except LeaseLost:
            self._count("lease_lost")
            raise
        except Exception:  # a cancelled tick (shutdown) is a BaseException: not a failure of the job
            self._count("failed")
            raise
        if done is None:
            self._count("not_leader")
            return 0
        self._count("ok")
        if self._metrics is not None:
            self._metrics.last_success.labels(self.job_name).set(time.time())
        return done

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.runs.labels(self.job_name, outcome).inc()

    async def _tick(self) -> int | None:
        """The job's count of work done; None if another replica holds the lease."""
        if not await self._lease.acquire():
            return None
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
                    log.info("%s: %d handled", self.name, done)
            except Exception as error:  # noqa: BLE001 - the next tick retries; logged
                log.warning("%s: %s", self.name, error)
            await self.pause(self._interval)
