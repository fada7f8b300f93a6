"""The SQL path: selling unallocated stock while Redis fails for this replica.

The same semantics as reserve.lua in one SQL transaction: product rows locked
in id order, a conditional update that never touches units allocated to Redis
(`stock - allocated >= quantity`), the order's marker in ``sql_reservations``
and its OrderPlaced in ``stock_outbox``. Units allocated to Redis wait for it,
so any number of replicas may sell on either path at once and none can sell a
unit another sold. The relay publishes the outbox; a release of an order taken
here gives its units back here, whichever path the releasing replica is on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalog.ledger import locked_levels, transaction
from catalog.models import products, sql_reservations, stock_outbox, stock_releases
from catalog.stock import Earlier, InsufficientStock, Line, Shortage, decode_lines, encode_lines
from mesh.db import UnitOfWork, reading
from mesh.errors import NotFound

RESERVED, RELEASED, SUPERSEDED = "reserved", "released", "superseded"


@dataclass(frozen=True)
class SqlReservation:
    order_id: str
    lines: list[Line]
    state: str


@dataclass(frozen=True)
class Pending:
    """An OrderPlaced of the outbox, with the lines its marker needs."""

    id: int
    order_id: str
    event: bytes
    lines: list[Line]


class SqlPath:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def reserve(self, order_id: str, lines: list[Line], event: bytes, now: datetime) -> Earlier | None:
        """Like reserve.lua: None when reserved now, the earlier reservation for a repeat."""

        async def work(connection: AsyncConnection) -> Earlier | None:
            # Not a locking read: a concurrent twin is stopped by the primary key
            # at INSERT, and the retry then finds it here.
            earlier = await self._reservation(connection, order_id, lock=False)
            if earlier is not None:
                return Earlier(earlier.lines, released=earlier.state == RELEASED)
            levels = await locked_levels(connection, [line.product_id for line in lines])
            for line in lines:
                if line.product_id not in levels:
                    raise NotFound("product", line.product_id)
            short = [
                Shortage(line.product_id, line.quantity, levels[line.product_id].unallocated)
                for line in lines
                if levels[line.product_id].unallocated < line.quantity
            ]
            if short:
                raise InsufficientStock(short)
            for line in lines:
                result = await connection.execute(
                    update(products)
                    .where(products.c.id == line.product_id, products.c.stock - products.c.allocated >= line.quantity)
                    .values(stock=products.c.stock - line.quantity)
                )
                if result.rowcount != 1:  # cannot happen under the row lock; refuse rather than oversell
                    raise RuntimeError(f"conditional stock update of {line.product_id} failed under lock")
            await connection.execute(
                insert(sql_reservations).values(
                    order_id=order_id, lines=encode_lines(lines), state=RESERVED, created_at=now
                )
            )
            await connection.execute(insert(stock_outbox).values(order_id=order_id, event=event, created_at=now))
            return None

        return await transaction(self.engine, work)

    async def state(self, order_id: str) -> str | None:
        async with reading(self.engine) as connection:
            reservation = await self._reservation(connection, order_id, lock=False)
        return reservation.state if reservation is not None else None

    async def release(self, order_id: str, now: datetime) -> SqlReservation | None:
        """Give back what an order reserved here, once. The reservation as it was
        (released now if its state was RESERVED); None if it was not taken here."""

        async def work(connection: AsyncConnection) -> SqlReservation | None:
            reservation = await self._reservation(connection, order_id)
            if reservation is None or reservation.state != RESERVED:
                return reservation
            await self._give_back(connection, reservation.lines)
            await self._set_state(connection, order_id, RELEASED)
            await connection.execute(
                insert(stock_releases),
                [
                    {
                        "source": f"sql:{order_id}:{line.product_id}",
                        "order_id": order_id,
                        "product_id": line.product_id,
                        "released_at": now,
                    }
                    for line in reservation.lines
                ],
            )
            return reservation

        return await transaction(self.engine, work)

    async def supersede(self, order_id: str) -> SqlReservation | None:
        """Undo the SQL copy of an order that reserve.lua reserved too: its units
        come back (unless released already), its OrderPlaced is never published."""

        async def work(connection: AsyncConnection) -> SqlReservation | None:
            reservation = await self._reservation(connection, order_id)
            if reservation is None or reservation.state == SUPERSEDED:
                return None
            if reservation.state == RESERVED:
                await self._give_back(connection, reservation.lines)
            await self._set_state(connection, order_id, SUPERSEDED)
            await connection.execute(delete(stock_outbox).where(stock_outbox.c.order_id == order_id))
            return reservation

        return await transaction(self.engine, work)

    async def pending(self, limit: int) -> list[Pending]:
        query = (
            select(stock_outbox.c.id, stock_outbox.c.order_id, stock_outbox.c.event, sql_reservations.c.lines)
            .join(sql_reservations, sql_reservations.c.order_id == stock_outbox.c.order_id)
            .order_by(stock_outbox.c.id)
            .limit(limit)
        )
        async with reading(self.engine) as connection:
            rows = (await connection.execute(query)).all()
        return [Pending(row.id, row.order_id, bytes(row.event), decode_lines(row.lines)) for row in rows]

    async def published(self, ids: list[int]) -> None:
        async with UnitOfWork(self.engine) as uow:
            await uow.connection.execute(delete(stock_outbox).where(stock_outbox.c.id.in_(ids)))
            await uow.commit()

    async def reservations(self) -> list[SqlReservation]:
        async with reading(self.engine) as connection:
            rows = (await connection.execute(select(sql_reservations))).all()
        return [SqlReservation(r.order_id, decode_lines(r.lines), r.state) for r in rows]

    async def outbox_size(self) -> int:
        async with reading(self.engine) as connection:
            return int((await connection.execute(select(func.count()).select_from(stock_outbox))).scalar_one())

    async def _give_back(self, connection: AsyncConnection, lines: list[Line]) -> None:
        await locked_levels(connection, [line.product_id for line in lines])
        for line in lines:
            await connection.execute(
                update(products).where(products.c.id == line.product_id).values(stock=products.c.stock + line.quantity)
            )

    async def _set_state(self, connection: AsyncConnection, order_id: str, state: str) -> None:
        await connection.execute(
            update(sql_reservations).where(sql_reservations.c.order_id == order_id).values(state=state)
        )

    async def _reservation(
        self, connection: AsyncConnection, order_id: str, lock: bool = True
    ) -> SqlReservation | None:
        query = select(sql_reservations).where(sql_reservations.c.order_id == order_id)
        row = (await connection.execute(query.with_for_update() if lock else query)).first()
        if row is None:
            return None
        return SqlReservation(row.order_id, decode_lines(row.lines), row.state)
