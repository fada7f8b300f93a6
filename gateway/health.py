"""/healthz and /readyz.

Readiness is checked in the background every READINESS_INTERVAL_SECONDS
(Redis answers, each dependency's gRPC health service answers SERVING) and
/readyz answers the last result, so probes cost nothing and never pile up on
a slow dependency. From the moment the process is told to stop it answers
503 ``draining``: load balancers take it out while it still serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway import schemas
from gateway.params import Query

log = logging.getLogger(__name__)
Check = Callable[[], Awaitable[bool]]


class Health:
    def __init__(self, checks: Mapping[str, Check], interval: float) -> None:
        self._checks = checks
        self._interval = interval
        self.results = dict.fromkeys(checks, False)
        self.draining = False
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return not self.draining and all(self.results.values())

    async def refresh(self) -> None:
        for name, check in self._checks.items():
            try:
                ok = await asyncio.wait_for(check(), timeout=self._interval)
            except Exception:  # noqa: BLE001 - any failure of a probe means not ready
                ok = False
            if self.results.get(name) != ok:  # log changes, not every probe
                log.log(logging.INFO if ok else logging.WARNING, "dependency %s is %s", name, "up" if ok else "down")
            self.results[name] = ok

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="gateway-readiness")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.refresh()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def healthz(self, request: Request, query: Query) -> JSONResponse:
        return JSONResponse(schemas.Health(status="ok", checks={}))

    async def readyz(self, request: Request, query: Query) -> JSONResponse:
        if self.draining:
            status: schemas.HealthStatus = "draining"
        else:
            status = "ready" if self.ready else "not ready"
        return JSONResponse(schemas.Health(status=status, checks=dict(self.results)), 200 if self.ready else 503)
