"""Product details (name, price) cached in-process with a jittered TTL.

The whole catalogue is reloaded at once by a single flight: when the entry
expires, the first caller reloads and every concurrent caller awaits the same
load instead of stampeding SQL. Jitter keeps replicas from reloading in step.
Stock is not here: stock is the Redis counter, never a cache. A reload that
fails (SQL down) keeps serving what was loaded.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

from catalog.products import Product

Loader = Callable[[], Awaitable[list[Product]]]
log = logging.getLogger(__name__)
# After a failed reload the held products are served this long before the next try.
RETRY_SECONDS = 2.0


class ProductCache:
    def __init__(
        self, load: Loader, ttl_seconds: float, *, jitter: float = 0.2, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._load = load
        self._ttl = ttl_seconds
        self._jitter = jitter
        self._clock = clock
        self._products: dict[str, Product] = {}
        self._expires = 0.0
        self._flight: asyncio.Task[dict[str, Product]] | None = None
        self.loads = 0

    async def get_many(self, product_ids: list[str]) -> dict[str, Product]:
        products = await self._current()
        return {pid: products[pid] for pid in product_ids if pid in products}

    async def all(self) -> dict[str, Product]:
        return dict(await self._current())

    async def _current(self) -> dict[str, Product]:
        if self._clock() < self._expires:
            return self._products
        if self._flight is None:
            self._flight = asyncio.ensure_future(self._reload())
        flight = self._flight
        try:
            return await asyncio.shield(flight)
        finally:
            if flight.done() and self._flight is flight:
                self._flight = None

    async def _reload(self) -> dict[str, Product]:
        try:
            rows = await self._load()
        except Exception as error:
            if not self._products:
                raise  # nothing loaded yet: nothing to serve
            # SQL is down: the details held are still right (prices change
            # rarely, and stock is not here), so the Redis path keeps selling.
            # Tried again after a short while, not on every call.
            log.warning("product reload failed, serving the %d products held: %s", len(self._products), error)
            self._expires = self._clock() + min(self._ttl, RETRY_SECONDS)
            return self._products
        self.loads += 1
        self._products = {p.id: p for p in rows}
        self._expires = self._clock() + self._ttl * (1 + random.uniform(-self._jitter, self._jitter))
        return self._products
