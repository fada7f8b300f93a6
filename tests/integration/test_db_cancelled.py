"""A call cancelled in the middle of its transaction (the client dropped the
connection, the deadline passed) leaves the next transaction on its pooled
connection working: the chaos run "connections-dropped" found payment answering
"cannot start a transaction within a transaction" for a minute after one."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, Table, insert, select

from mesh.db import UnitOfWork, create_engine, create_schema, reading

METADATA = MetaData()
ROWS = Table("rows", METADATA, Column("id", Integer, primary_key=True))


async def test_cancelled_transactions_leave_no_transaction_open(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    await create_schema(engine, METADATA)
    rng = random.Random(7)

    async def write(n: int) -> None:
        async with UnitOfWork(engine) as uow:
            await uow.connection.execute(insert(ROWS).values(id=n))
            await uow.commit()

    async def read() -> None:
        async with reading(engine) as connection:
            await connection.execute(select(ROWS))

    # Calls cancelled at every point of their transaction (waiting for the
    # writer lock or the pool, in BEGIN, in the statement, in COMMIT), many at once.
    for wave in range(30):
        tasks = [asyncio.create_task(write(wave * 100 + n) if n % 3 else read()) for n in range(20)]
        for task in tasks:
            await asyncio.sleep(rng.random() / 2000)
            if rng.random() < 0.6:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    for n in range(10_000, 10_020):  # every pooled connection works again, without waiting on a lock
        await asyncio.wait_for(write(n), 10)
        await asyncio.wait_for(read(), 10)
    async with reading(engine) as connection:
        assert (await connection.execute(select(ROWS.c.id).where(ROWS.c.id >= 10_000))).scalars().all() == list(
            range(10_000, 10_020)
        )
    await engine.dispose()
