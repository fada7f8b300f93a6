"""The product cache: one load for concurrent callers, and SQL down keeps what was loaded."""

from __future__ import annotations

import asyncio

import pytest

from catalog.cache import ProductCache
from catalog.products import Product
from mesh.money import Money

TYPEWRITER = Product("sku-1", "Typewriter", "", Money.of("USD", 67, 990_000_000), 0, ())


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Loader:
    def __init__(self) -> None:
        self.calls = 0
        self.down = False

    async def __call__(self) -> list[Product]:
        self.calls += 1
        await asyncio.sleep(0)
        if self.down:
            raise ConnectionError("SQL is down")
        return [TYPEWRITER]


async def test_concurrent_callers_share_one_load() -> None:
    load = Loader()
    cache = ProductCache(load, ttl_seconds=30, clock=Clock())
    found = await asyncio.gather(*(cache.get_many(["sku-1"]) for _ in range(20)))
    assert all(f == {"sku-1": TYPEWRITER} for f in found)
    assert load.calls == 1


async def test_sql_down_keeps_serving_what_was_loaded_and_retries_soon() -> None:
    load, clock = Loader(), Clock()
    cache = ProductCache(load, ttl_seconds=30, jitter=0, clock=clock)
    await cache.get_many(["sku-1"])
    load.down = True
    clock.now = 31  # expired while SQL is down
    assert await cache.get_many(["sku-1"]) == {"sku-1": TYPEWRITER}
    assert await cache.get_many(["sku-1"]) == {"sku-1": TYPEWRITER}
    assert load.calls == 2, "a failed reload is not repeated on every call"
    clock.now = 34  # past the short retry
    load.down = False
    await cache.get_many(["sku-1"])
    assert load.calls == 3


async def test_a_first_load_that_fails_is_an_error() -> None:
    load = Loader()
    load.down = True
    cache = ProductCache(load, ttl_seconds=30, clock=Clock())
    with pytest.raises(ConnectionError):
        await cache.get_many(["sku-1"])
