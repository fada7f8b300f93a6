"""The SQL side of stock: the write-behind target, and the fallback path.

Fallback (Redis unavailable): the same semantics as the Lua scripts in one
SQL transaction — product rows locked in id order, conditional updates,
idempotency markers in ``sql_reservations``, OrderPlaced in ``stock_outbox``,
and each touched product recorded in ``stock_dirty`` so its Redis counter is
rebuilt before Redis is trusted again.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import case, delete, insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalog.journal import JournalEntry, totals
from catalog.models import journal_applied, products, sql_reservations, stock_dirty, stock_outbox
from catalog.stock import InsufficientStock, Line, Shortage, decode_lines, encode_lines
from mesh.db import UnitOfWork, reading
from mesh.errors import NotFound

T = TypeVar("T")
ATTEMPTS = 8


@dataclass(frozen=True)
class SqlReservation:
    order_id: str
    lines: list[Line]
    released: bool


@dataclass(frozen=True)
class OutboxEvent:
    id: int
    order_id: str
    event: bytes


class SqlStock:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def _transaction(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction, retrying lost races and deadlocks."""
        for attempt in range(ATTEMPTS):
            try:
                async with UnitOfWork(self.engine) as uow:
                    result = await work(uow.connection)
                    await uow.commit()
                    return result
            except DBAPIError as error:
                # Duplicate key (a concurrent twin won), deadlock, lock wait:
                # all resolved by running again on fresh state, a little later.
                if attempt == ATTEMPTS - 1 or error.connection_invalidated:
                    raise
                await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))
        raise AssertionError("unreachable")

    # -- the write-behind target -------------------------------------------------

    async def apply_journal(self, entries: list[JournalEntry], now: datetime) -> int:
        """Apply entries not applied before; returns how many were new."""

        async def work(connection: AsyncConnection) -> int:
            ids = [e.entry_id for e in entries]
            seen = set(
                (
                    await connection.execute(
                        select(journal_applied.c.entry_id).where(journal_applied.c.entry_id.in_(ids))
                    )
                )
                .scalars()
                .all()
            )
            fresh = [e for e in entries if e.entry_id not in seen]
            if not fresh:
                return 0
            net = {pid: delta for pid, delta in totals(fresh).items() if delta}
            if net:
                await connection.execute(
                    update(products)
                    .where(products.c.id.in_(list(net)))
                    .values(stock=products.c.stock + case(net, value=products.c.id, else_=0))
                )
            await connection.execute(
                insert(journal_applied), [{"entry_id": e.entry_id, "applied_at": now} for e in fresh]
            )
            return len(fresh)

        return await self._transaction(work)

    async def stock(self, product_ids: list[str]) -> dict[str, int]:
        async with reading(self.engine) as connection:
            rows = (
                await connection.execute(select(products.c.id, products.c.stock).where(products.c.id.in_(product_ids)))
            ).all()
        return {row.id: int(row.stock) for row in rows}

    async def all_stock(self) -> dict[str, int]:
        async with reading(self.engine) as connection:
            rows = (await connection.execute(select(products.c.id, products.c.stock).order_by(products.c.id))).all()
        return {row.id: int(row.stock) for row in rows}

    # -- the fallback path --------------------------------------------------------

    async def reserve(self, order_id: str, lines: list[Line], event: bytes, now: datetime) -> list[Line] | None:
        """Like reserve.lua: None when reserved now, the earlier lines for a repeat."""

        async def work(connection: AsyncConnection) -> list[Line] | None:
            # Not a locking read: a concurrent twin is stopped by the primary key
            # at INSERT, and the retry then finds it here.
            earlier = await self._reservation(connection, order_id, lock=False)
            if earlier is not None:
                return earlier.lines
            pids = [line.product_id for line in lines]  # already in id order: merge() sorts
            rows = (
                await connection.execute(
                    select(products.c.id, products.c.stock)
                    .where(products.c.id.in_(pids))
                    .order_by(products.c.id)
                    .with_for_update()
                )
            ).all()
            stock = {row.id: int(row.stock) for row in rows}
            for pid in pids:
                if pid not in stock:
                    raise NotFound("product", pid)
            short = [
                Shortage(line.product_id, line.quantity, stock[line.product_id])
                for line in lines
                if stock[line.product_id] < line.quantity
            ]
            if short:
                raise InsufficientStock(short)
            for line in lines:
                result = await connection.execute(
                    update(products)
                    .where(products.c.id == line.product_id, products.c.stock >= line.quantity)
                    .values(stock=products.c.stock - line.quantity)
                )
                if result.rowcount != 1:  # cannot happen under the row lock; refuse rather than oversell
                    raise RuntimeError(f"conditional stock update of {line.product_id} failed under lock")
            await connection.execute(
                insert(sql_reservations).values(
                    order_id=order_id, lines=encode_lines(lines), released=False, created_at=now
                )
            )
            await connection.execute(insert(stock_outbox).values(order_id=order_id, event=event, created_at=now))
            await self._mark_dirty(connection, pids)
            return None

        return await self._transaction(work)

    async def release(self, order_id: str) -> bool | None:
        """Like release.lua; None when SQL has no record (the reservation was Redis's)."""

        async def work(connection: AsyncConnection) -> bool | None:
            reservation = await self._reservation(connection, order_id)
            if reservation is None:
                return None
            if reservation.released:
                return False
            for line in reservation.lines:
                await connection.execute(
                    update(products)
                    .where(products.c.id == line.product_id)
                    .values(stock=products.c.stock + line.quantity)
                )
            await connection.execute(
                update(sql_reservations).where(sql_reservations.c.order_id == order_id).values(released=True)
            )
            await self._mark_dirty(connection, [line.product_id for line in reservation.lines])
            return True

        return await self._transaction(work)

    async def set_stock(self, product_id: str, stock: int) -> None:
        async def work(connection: AsyncConnection) -> None:
            result = await connection.execute(update(products).where(products.c.id == product_id).values(stock=stock))
            if result.rowcount != 1:
                raise NotFound("product", product_id)
            await self._mark_dirty(connection, [product_id])

        await self._transaction(work)

    async def _reservation(
        self, connection: AsyncConnection, order_id: str, lock: bool = True
    ) -> SqlReservation | None:
        query = select(sql_reservations).where(sql_reservations.c.order_id == order_id)
        row = (await connection.execute(query.with_for_update() if lock else query)).first()
        if row is None:
            return None
        return SqlReservation(row.order_id, decode_lines(row.lines), bool(row.released))

    async def _mark_dirty(self, connection: AsyncConnection, product_ids: list[str]) -> None:
        present = set(
            (
                await connection.execute(
                    select(stock_dirty.c.product_id).where(stock_dirty.c.product_id.in_(product_ids))
                )
            )
            .scalars()
            .all()
        )
        missing = sorted(set(product_ids) - present)
        if missing:
            await connection.execute(insert(stock_dirty), [{"product_id": pid} for pid in missing])

    # -- recovery: bringing Redis back in line -------------------------------------

    async def dirty_stock(self) -> dict[str, int]:
        """Stock of every product changed on the SQL path since the last rebuild."""
        async with reading(self.engine) as connection:
            rows = (
                await connection.execute(
                    select(products.c.id, products.c.stock).join(stock_dirty, stock_dirty.c.product_id == products.c.id)
                )
            ).all()
        return {row.id: int(row.stock) for row in rows}

    async def clear_dirty(self, expected: dict[str, int]) -> bool:
        """Forget dirty marks whose stock is still what was copied to Redis.

        Returns False if some product changed meanwhile (copy again)."""

        async def work(connection: AsyncConnection) -> bool:
            now = await self._locked_stock(connection, list(expected))
            unchanged = [pid for pid, stock in expected.items() if now.get(pid) == stock]
            if unchanged:
                await connection.execute(delete(stock_dirty).where(stock_dirty.c.product_id.in_(unchanged)))
            return len(unchanged) == len(expected)

        return await self._transaction(work)

    async def _locked_stock(self, connection: AsyncConnection, product_ids: list[str]) -> dict[str, int]:
        rows = (
            await connection.execute(
                select(products.c.id, products.c.stock)
                .where(products.c.id.in_(product_ids))
                .order_by(products.c.id)
                .with_for_update()
            )
        ).all()
        return {row.id: int(row.stock) for row in rows}

    async def forget_duplicate(self, order_id: str) -> SqlReservation | None:
        """Undo a SQL-path reservation of an order that Redis also reserved.

        Gives its stock back (unless it was released already), drops its
        OrderPlaced from the outbox (Redis already published one) and forgets it.
        """

        async def work(connection: AsyncConnection) -> SqlReservation | None:
            reservation = await self._reservation(connection, order_id)
            if reservation is None:
                return None
            if not reservation.released:
                for line in reservation.lines:
                    await connection.execute(
                        update(products)
                        .where(products.c.id == line.product_id)
                        .values(stock=products.c.stock + line.quantity)
                    )
                await self._mark_dirty(connection, [line.product_id for line in reservation.lines])
            await connection.execute(delete(stock_outbox).where(stock_outbox.c.order_id == order_id))
            await connection.execute(delete(sql_reservations).where(sql_reservations.c.order_id == order_id))
            return reservation

        return await self._transaction(work)

    async def reservations(self) -> list[SqlReservation]:
        async with reading(self.engine) as connection:
            rows = (await connection.execute(select(sql_reservations))).all()
        return [SqlReservation(r.order_id, decode_lines(r.lines), bool(r.released)) for r in rows]

    async def outbox(self, limit: int = 500) -> list[OutboxEvent]:
        async with reading(self.engine) as connection:
            rows = (await connection.execute(select(stock_outbox).order_by(stock_outbox.c.id).limit(limit))).all()
        return [OutboxEvent(r.id, r.order_id, bytes(r.event)) for r in rows]

    async def delete_outbox(self, ids: list[int]) -> None:
        async with UnitOfWork(self.engine) as uow:
            await uow.connection.execute(delete(stock_outbox).where(stock_outbox.c.id.in_(ids)))
            await uow.commit()
