"""The Redis side of stock: counters of the allocation, markers, journal, epoch.

Every call classifies its failure: a connection that fails or times out is
``RedisDown`` (this replica sells from SQL meanwhile); a Redis that answers but
refuses (READONLY, MISCONF, OOM) or a pool with no free connection is
``Unavailable`` to the caller and never a reason to leave Redis.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis.asyncio as redis
from opentelemetry import trace
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from catalog.keys import Keys
from catalog.stock import (
    SQL_SOURCE,
    Earlier,
    EpochChanged,
    InsufficientStock,
    Line,
    RedisDown,
    Shortage,
    marker,
    parse_marker,
)
from mesh.bus.tracing import MESSAGE_ID
from mesh.errors import Unavailable, redis_refused
from mesh.redis_pipe import RedisPipe


def _lua(name: str) -> str:
    return resources.files("catalog").joinpath("lua", name).read_text()


@dataclass(frozen=True)
class Marker:
    source: str  # an epoch, or SQL_SOURCE
    lines: list[Line]


class RedisStock:
    def __init__(
        self, client: redis.Redis, keys: Keys, marker_ttl_seconds: int, *, pipe: RedisPipe | None = None
    ) -> None:
        self.client = client
        # Reservations and releases, the per-order calls, go through the pipe
        # when there is one (see mesh/redis_pipe.py); everything else through redis-py.
        self.pipe = pipe
        self.keys = keys
        self._ttl = marker_ttl_seconds
        # register_script: EVALSHA, and on NOSCRIPT (a restarted or flushed
        # Redis) it loads the script and retries.
        self._reserve = client.register_script(_lua("reserve.lua"))
        self._release = client.register_script(_lua("release.lua"))
        self._refill = client.register_script(_lua("refill.lua"))
        self._take = client.register_script(_lua("take.lua"))
        self._relay = client.register_script(_lua("relay.lua"))
        self._new_epoch = client.register_script(_lua("new_epoch.lua"))

    async def call(self, operation: Callable[[], Awaitable[Any]]) -> Any:
        """Run a Redis operation, its failure classified (see the module docstring)."""
        try:
            return await operation()
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            raise RedisDown(str(error) or type(error).__name__) from error
        except RedisError as error:
            if redis_refused(error):
                raise Unavailable(f"Redis refused the call ({error}); retry") from error
            raise

    async def _script(self, script: AsyncScript, keys: list[str], args: Sequence[bytes | str | int]) -> Any:
        """EVALSHA on the pipe (loading the script on NOSCRIPT, as redis-py does), else through redis-py."""
        if self.pipe is None:
            return await script(keys=keys, args=args)
        try:
            return await self.pipe.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:  # a restarted or flushed Redis
            await self.pipe.call("SCRIPT", "LOAD", str(script.script))  # the scripts are read as text
            return await self.pipe.call("EVALSHA", script.sha, len(keys), *keys, *args)

    # -- selling ------------------------------------------------------------------

    async def reserve(self, epoch: str, order_id: str, lines: list[Line], envelope: bytes) -> Earlier | None:
        """Reserve all lines; None when done now, the earlier reservation if there is one."""
        keys = [self.keys.epoch, self.keys.reserved(order_id), self.keys.released(order_id)]
        keys += [self.keys.journal, self.keys.order_stream]
        keys += [self.keys.stock(epoch, line.product_id) for line in lines]
        args: list[bytes | str | int] = [epoch, order_id, self._ttl, envelope]
        for line in lines:
            args += [line.product_id, line.quantity]
        reply = await self.call(lambda: self._script(self._reserve, keys, args))
        kind = _text(reply[0])
        if kind == "OK":
            # The caller's PRODUCER span (StockEngine.reserve) names the entry it published.
            span = trace.get_current_span()
            if span.is_recording():
                span.set_attribute(MESSAGE_ID, _text(reply[1]))
            return None
        if kind == "DUP":
            source, earlier = parse_marker(_text(reply[1]))
            return Earlier(earlier, None if source == SQL_SOURCE else _text(reply[2]) == "1")
        if kind == "EPOCH":
            raise EpochChanged(f"Redis is not in epoch {epoch}")
        if kind == "SHORT":
            values = reply[1:]
            raise InsufficientStock(
                [Shortage(_text(values[i]), int(values[i + 1]), int(values[i + 2])) for i in range(0, len(values), 3)]
            )
        raise RuntimeError(f"unexpected reply from reserve.lua: {reply!r}")

    async def release(self, order_id: str) -> str:
        """'OK', 'DONE', 'NONE', 'SQL' or 'STALE' (see release.lua)."""
        keys = [self.keys.epoch, self.keys.reserved(order_id), self.keys.released(order_id), self.keys.journal]
        args: list[str | int] = [order_id, self._ttl, f"{self.keys.prefix}:stock:"]
        return _text(await self.call(lambda: self._script(self._release, keys, args)))

    async def take(self, epoch: str, product_id: str, keep: int) -> int:
        """Shrink a counter to at most ``keep`` (journaled); returns the counter after."""
        keys = [self.keys.epoch, self.keys.stock(epoch, product_id), self.keys.journal]
        reply = await self.call(lambda: self._take(keys=keys, args=[epoch, product_id, keep]))
        if _text(reply[0]) == "EPOCH":
            raise EpochChanged(f"Redis is not in epoch {epoch}")
        return int(reply[1])

    async def counters(self, epoch: str, product_ids: list[str]) -> dict[str, int]:
        """Counters of the allocation; an absent counter holds nothing."""
        values = await self.call(lambda: self.client.mget([self.keys.stock(epoch, p) for p in product_ids]))
        return {pid: int(v) if v is not None else 0 for pid, v in zip(product_ids, values, strict=True)}

    # -- refills ------------------------------------------------------------------

    async def refill(self, epoch: str, refill_id: str, units: dict[str, int]) -> str:
        """'OK' added now, 'DONE' added before, 'EPOCH' (see refill.lua)."""
        keys = [self.keys.epoch, self.keys.refill(refill_id)] + [self.keys.stock(epoch, p) for p in units]
        args: list[str | int] = [epoch, self._ttl, *units.values()]
        return _text(await self.call(lambda: self._refill(keys=keys, args=args)))

    async def refills_applied(self, refill_ids: list[str]) -> set[str]:
        if not refill_ids:
            return set()
        pipe = self.client.pipeline(transaction=False)
        for refill_id in refill_ids:
            pipe.exists(self.keys.refill(refill_id))
        found = await self.call(pipe.execute)
        return {refill_id for refill_id, hit in zip(refill_ids, found, strict=True) if hit}

    # -- epochs -------------------------------------------------------------------

    async def epoch(self) -> str | None:
        value = await self.call(lambda: self.client.get(self.keys.epoch))
        return _text(value) if value is not None else None

    async def start_epoch(self, epoch: str, previous: str | None) -> None:
        """Point Redis at a new epoch. A journal left by the old one is moved aside
        in the same step: its entries belong to counters nobody sells from any more."""
        keys = [self.keys.epoch, self.keys.journal, self.keys.stale_journal(previous or "none")]
        await self.call(lambda: self._new_epoch(keys=keys, args=[epoch]))

    # -- the SQL path's orders ----------------------------------------------------

    async def relay(self, order_id: str, lines: list[Line], envelope: bytes) -> str:
        """'OK', 'SEEN' or 'DUP' (see relay.lua)."""
        keys = [self.keys.reserved(order_id), self.keys.order_stream]
        args: list[bytes | str | int] = [order_id, marker(SQL_SOURCE, lines), self._ttl, envelope]
        return _text(await self.call(lambda: self._relay(keys=keys, args=args)))

    async def markers(self, order_ids: list[str]) -> dict[str, Marker]:
        if not order_ids:
            return {}
        values = await self.call(lambda: self.client.mget([self.keys.reserved(o) for o in order_ids]))
        found = {}
        for order_id, value in zip(order_ids, values, strict=True):
            if value is not None:
                source, lines = parse_marker(_text(value))
                found[order_id] = Marker(source, lines)
        return found

    async def all_markers(self) -> dict[str, Marker]:
        """Every reservation marker in this Redis (an operator's read: SCAN, not one call)."""
        prefix = self.keys.reserved("")
        order_ids: list[str] = []
        async for key in self.client.scan_iter(match=prefix + "*", count=1000):
            order_ids.append(_text(key)[len(prefix) :])
        found: dict[str, Marker] = {}
        for start in range(0, len(order_ids), 1000):
            found.update(await self.markers(order_ids[start : start + 1000]))
        return found

    async def released(self, order_ids: list[str]) -> set[str]:
        """The orders among ``order_ids`` whose reservation was given back here."""
        found: set[str] = set()
        for start in range(0, len(order_ids), 1000):
            chunk = order_ids[start : start + 1000]
            keys = [self.keys.released(o) for o in chunk]
            values = await self.call(lambda: self.client.mget(keys))  # noqa: B023 - awaited before the next chunk
            found.update(o for o, value in zip(chunk, values, strict=True) if value is not None)
        return found

    # -- journal ------------------------------------------------------------------

    async def journal_totals(self) -> dict[str, int]:
        """Net unflushed change per product (the flusher deletes what it applied)."""
        net: dict[str, int] = {}
        last = "-"
        while True:
            entries = await self._xrange(last)
            if not entries:
                return net
            for _entry_id, fields in entries:
                product_id = _text(fields.get(b"product_id", b""))
                try:
                    net[product_id] = net.get(product_id, 0) + int(fields.get(b"delta", b"0"))
                except ValueError:
                    net.setdefault(product_id, 0)  # malformed: the flusher dead-letters it
            last = "(" + _text(entries[-1][0])

    async def _xrange(self, after: str) -> list[Any]:
        return list(await self.call(lambda: self.client.xrange(self.keys.journal, min=after, count=1000)) or [])

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except (RedisError, OSError, Unavailable):
            return False


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
