"""Background loops with the same start/stop contract for every worker.

``stop()`` clears ``running``; the loop finishes the unit of work in hand
(a batch, a tick) and returns. After ``grace`` seconds it is cancelled, and
whatever it had not acknowledged is redelivered to another worker. A loop
that waits between units waits with ``pause()``, which ``stop()`` ends at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol


class Worker(Protocol):
    """Background work owned by a process: started after the server, stopped before clients close."""

    async def start(self) -> None: ...

    async def stop(self, grace: float = 10.0) -> None:
        """Finish the work in hand within ``grace`` seconds, then cancel the rest."""


class LoopWorker:
    def __init__(self, name: str) -> None:
        self.name = name
        self.running = False
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None

    async def start(self) -> None:
        self.running = True
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self.run(), name=self.name)

    async def stop(self, grace: float = 10.0) -> None:
        self.running = False
        if self._stopping is not None:
            self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        await self.stopped()

    async def run(self) -> None:
        """The loop: ``while self.running: ...``."""
        raise NotImplementedError

    async def pause(self, seconds: float) -> None:
        """Wait between units of work: ``seconds``, or until ``stop()``. A job
        that runs once a minute would otherwise hold its process's shutdown for
        the whole grace period."""
        if self._stopping is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def stopped(self) -> None:
        """Called once the loop has ended (release leases and the like)."""
