"""A read of a row and its children sees one committed state, even when a
write commits between its statements (MariaDB's READ COMMITTED would not)."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, insert, select, update

from mesh.db import create_engine, reading
from mesh.local.procs import MariaDBServer

metadata = MetaData()
parents = Table("parents", metadata, Column("id", Integer, primary_key=True), Column("status", String(16)))
children = Table(
    "children",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("parent_id", Integer, ForeignKey("parents.id")),
    Column("status", String(16)),
)


async def read_straddling_a_commit(url: str, *, snapshot: bool) -> tuple[str, list[str]]:
    """The parent's status and its children's, with a status change (the row and a
    new child, in one transaction) committed between the two reads."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
            await connection.execute(insert(parents).values(id=1, status="SHIPPING"))
            await connection.execute(insert(children).values(parent_id=1, status="SHIPPING"))
        async with reading(engine, snapshot=snapshot) as connection:
            status = (await connection.execute(select(parents.c.status).where(parents.c.id == 1))).scalar_one()
            async with engine.begin() as writer:
                await writer.execute(update(parents).where(parents.c.id == 1).values(status="SHIPPED"))
                await writer.execute(insert(children).values(parent_id=1, status="SHIPPED"))
            query = select(children.c.status).where(children.c.parent_id == 1).order_by(children.c.id)
            return status, list((await connection.execute(query)).scalars())
    finally:
        await engine.dispose()


async def test_a_snapshot_read_never_straddles_a_commit(database_url: str) -> None:
    assert await read_straddling_a_commit(database_url, snapshot=True) == ("SHIPPING", ["SHIPPING"])


@pytest.mark.mariadb
async def test_without_a_snapshot_mariadb_reads_straddle_the_commit(mariadb_server: MariaDBServer) -> None:
    mariadb_server.create_database("t_straddle")
    straddled = await read_straddling_a_commit(mariadb_server.url("t_straddle"), snapshot=False)
    assert straddled == ("SHIPPING", ["SHIPPING", "SHIPPED"])  # the fault the snapshot prevents
