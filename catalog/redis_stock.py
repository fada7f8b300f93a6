"""The Redis path: counters, markers, journal and OrderPlaced in one Lua call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from catalog.keys import Keys
from catalog.stock import (
    COPIED_FROM_SQL,
    CounterMissing,
    InsufficientStock,
    Line,
    RedisDown,
    Shortage,
    decode_lines,
    encode_lines,
)


def _lua(name: str) -> str:
    return resources.files("catalog").joinpath("lua", name).read_text()


class RedisStock:
    def __init__(self, client: redis.Redis, keys: Keys, marker_ttl_seconds: int) -> None:
        self._client = client
        self._keys = keys
        self._ttl = marker_ttl_seconds
        # register_script: EVALSHA, and on NOSCRIPT (a restarted or flushed
        # Redis) it loads the script and retries.
        self._reserve = client.register_script(_lua("reserve.lua"))
        self._release = client.register_script(_lua("release.lua"))
        self._set_stock = client.register_script(_lua("set_stock.lua"))

    async def _call(self, operation: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await operation()
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            raise RedisDown(str(error)) from error

    async def reserve(self, order_id: str, lines: list[Line], envelope: bytes) -> list[Line] | None:
        """Reserve all lines; None when done now, the earlier lines if already reserved."""
        keys = [self._keys.reserved(order_id), self._keys.journal, self._keys.order_stream]
        keys += [self._keys.stock(line.product_id) for line in lines]
        args: list[bytes | str | int] = [order_id, self._ttl, envelope]
        for line in lines:
            args += [line.product_id, line.quantity]
        reply = await self._call(lambda: self._reserve(keys=keys, args=args))
        kind = _text(reply[0])
        if kind == "OK":
            return None
        if kind == "DUP":
            return decode_lines(_text(reply[1]))
        if kind == "MISSING":
            raise CounterMissing([_text(pid) for pid in reply[1:]])
        if kind == "SHORT":
            values = reply[1:]
            raise InsufficientStock(
                [Shortage(_text(values[i]), int(values[i + 1]), int(values[i + 2])) for i in range(0, len(values), 3)]
            )
        raise RuntimeError(f"unexpected reply from reserve.lua: {reply!r}")

    async def release(self, order_id: str) -> bool:
        keys = [self._keys.reserved(order_id), self._keys.released(order_id), self._keys.journal]
        args: list[str | int] = [order_id, self._ttl, self._keys.stock_prefix]
        return bool(await self._call(lambda: self._release(keys=keys, args=args)))

    async def set_stock(self, product_id: str, stock: int) -> None:
        keys = [self._keys.stock(product_id), self._keys.journal]
        reply = await self._call(lambda: self._set_stock(keys=keys, args=[product_id, stock]))
        if _text(reply[0]) == "MISSING":
            raise CounterMissing([product_id])

    async def counters(self, product_ids: list[str]) -> dict[str, int | None]:
        values = await self._call(lambda: self._client.mget([self._keys.stock(p) for p in product_ids]))
        return {pid: int(v) if v is not None else None for pid, v in zip(product_ids, values, strict=True)}

    async def reserved_by_lua(self, order_id: str) -> bool:
        """True if reserve.lua itself reserved this order (not a marker copied from SQL)."""
        value = await self._call(lambda: self._client.get(self._keys.reserved(order_id)))
        return value is not None and not _text(value).startswith(COPIED_FROM_SQL)

    async def put_counter(self, product_id: str, stock: int, *, overwrite: bool) -> bool:
        """Set a counter from SQL: only if absent (a load) or unconditionally (a rebuild)."""
        key = self._keys.stock(product_id)
        return bool(await self._call(lambda: self._client.set(key, stock, nx=not overwrite)))

    async def put_markers(self, order_id: str, lines: list[Line], released: bool) -> None:
        """Copy a SQL-path reservation into Redis so a retry on Redis is recognised."""
        pipe = self._client.pipeline(transaction=True)
        pipe.set(self._keys.reserved(order_id), COPIED_FROM_SQL + encode_lines(lines), ex=self._ttl, nx=True)
        if released:
            pipe.set(self._keys.released(order_id), "1", ex=self._ttl, nx=True)
        await self._call(pipe.execute)

    async def publish_order_placed(self, order_id: str, envelope: bytes) -> None:
        fields: dict[Any, Any] = {"type": "OrderPlaced", "order_id": order_id, "event": envelope}
        await self._call(lambda: self._client.xadd(self._keys.order_stream, fields))

    async def journal_length(self) -> int:
        return int(await self._call(lambda: self._client.xlen(self._keys.journal)))

    async def journal_totals(self) -> dict[str, int]:
        """Net unflushed change per product (the flusher deletes what it applied)."""
        net: dict[str, int] = {}
        last = "-"
        while True:
            entries = await self._client_xrange(last)
            if not entries:
                return net
            for _entry_id, fields in entries:
                product_id = _text(fields.get(b"product_id", b""))
                try:
                    net[product_id] = net.get(product_id, 0) + int(fields.get(b"delta", b"0"))
                except ValueError:
                    net.setdefault(product_id, 0)  # malformed: the flusher dead-letters it
            last = "(" + _text(entries[-1][0])

    async def _client_xrange(self, after: str) -> list[Any]:
        return list(await self._call(lambda: self._client.xrange(self._keys.journal, min=after, count=1000)) or [])

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (RedisConnectionError, RedisTimeoutError, OSError):
            return False


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
