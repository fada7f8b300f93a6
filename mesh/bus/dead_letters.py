"""Dead letters persisted in SQL, and replay back onto their stream."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import Column, DateTime, Integer, LargeBinary, MetaData, String, Table, Text, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from mesh.db import UnitOfWork, reading


def dead_letters_table(metadata: MetaData) -> Table:
    """The ``dead_letters`` table, added to a context's own metadata."""
    return Table(
        "dead_letters",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("stream", String(200), nullable=False),
        Column("message_id", String(64), nullable=False),
        Column("type", String(64), nullable=False),
        Column("order_id", String(64), nullable=False),
        Column("reason", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("replayed_at", DateTime(timezone=True), nullable=True),
    )


@dataclass(frozen=True)
class DeadLetter:
    id: int
    stream: str
    message_id: str
    type: str
    order_id: str
    reason: str
    attempts: int
    payload: bytes


class DeadLetterSink(Protocol):
    async def store(self, letter: DeadLetter, now: datetime) -> None: ...


class KeptOnStream:
    """For a process without a database (checkout): the ``<stream>:dead`` entry
    the stream consumer writes before acknowledging is the durable record."""

    async def store(self, letter: DeadLetter, now: datetime) -> None:
        return None


class SqlDeadLetters:
    def __init__(self, engine: AsyncEngine, table: Table) -> None:
        self._engine = engine
        self._table = table

    async def store(self, letter: DeadLetter, now: datetime) -> None:
        async with UnitOfWork(self._engine) as uow:
            await uow.connection.execute(
                self._table.insert().values(
                    stream=letter.stream,
                    message_id=letter.message_id,
                    type=letter.type,
                    order_id=letter.order_id,
                    reason=letter.reason[:2000],
                    attempts=letter.attempts,
                    payload=letter.payload,
                    created_at=now,
                )
            )
            await uow.commit()

    async def pending(self) -> list[DeadLetter]:
        """Dead letters not replayed yet, oldest first."""
        t = self._table
        async with reading(self._engine) as connection:
            rows = (await connection.execute(select(t).where(t.c.replayed_at.is_(None)).order_by(t.c.id))).all()
        return [
            DeadLetter(r.id, r.stream, r.message_id, r.type, r.order_id, r.reason, r.attempts, bytes(r.payload))
            for r in rows
        ]

    async def mark_replayed(self, letter_id: int, now: datetime) -> None:
        async with UnitOfWork(self._engine) as uow:
            t = self._table
            await uow.connection.execute(update(t).where(t.c.id == letter_id).values(replayed_at=now))
            await uow.commit()


class Republisher(Protocol):
    async def republish(self, stream: str, type_: str, order_id: str, payload: bytes) -> str: ...


async def replay(letters: SqlDeadLetters, publisher: Republisher, now: datetime, ids: set[int] | None = None) -> int:
    """Put dead letters back on their stream (after the cause is fixed).

    At-least-once: a crash between publish and mark replays one twice, which
    idempotent handlers absorb."""
    count = 0
    for letter in await letters.pending():
        if ids is not None and letter.id not in ids:
            continue
        await publisher.republish(letter.stream, letter.type, letter.order_id, letter.payload)
        await letters.mark_replayed(letter.id, now)
        count += 1
    return count
