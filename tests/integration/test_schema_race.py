"""Replicas starting together create the schema together (two catalog or order
pods on one MariaDB): every one of them must start."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import OperationalError

from mesh.db import create_engine, create_schema
from mesh.local.procs import MariaDBServer
from order.models import metadata

pytestmark = pytest.mark.mariadb


@pytest.mark.parametrize("wait_seconds, survives", [(0, False), (10, True)])
async def test_replicas_creating_the_schema_at_once_all_start(
    mariadb_server: MariaDBServer, wait_seconds: float, survives: bool
) -> None:
    """With one attempt (no waiting) the race shows: some replica fails with
    "already exists"; trying again, every replica starts."""
    failures = 0
    for _ in range(6):  # fresh databases until the race showed, or six tries
        name = f"race_{uuid.uuid4().hex[:10]}"
        mariadb_server.create_database(name)
        engines = [create_engine(mariadb_server.url(name), pool_size=1) for _ in range(4)]
        try:
            outcomes = await asyncio.gather(
                *(create_schema(engine, metadata, wait_seconds=wait_seconds) for engine in engines),
                return_exceptions=True,
            )
            failures += sum(isinstance(outcome, Exception) for outcome in outcomes)
            async with engines[0].connect() as connection:
                tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
            assert tables >= set(metadata.tables) or not survives
        finally:
            for engine in engines:
                await engine.dispose()
        if failures and not survives:
            break
    assert (failures == 0) is survives, f"{failures} replicas failed to create the schema"


async def test_a_process_waits_for_its_database_to_start(tmp_path: Path) -> None:
    """In a cluster the database starts with the mesh: the schema is created
    once it answers, instead of the process exiting (and being restarted
    only after a back-off)."""
    server = MariaDBServer(tmp_path / "late")
    engine = create_engine(server.url("ordermesh_late"), pool_size=1)
    try:
        creating = asyncio.create_task(create_schema(engine, metadata, wait_seconds=60))
        await asyncio.sleep(1.5)
        assert not creating.done(), "gave up while the database was down"
        await asyncio.to_thread(server.start)
        server.create_database("ordermesh_late")
        await asyncio.wait_for(creating, 30)
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        assert tables >= set(metadata.tables)
    finally:
        await engine.dispose()
        server.stop()


async def test_an_unreachable_database_still_fails_after_the_wait(tmp_path: Path) -> None:
    engine = create_engine(MariaDBServer(tmp_path / "never").url("nothing"), pool_size=1)
    try:
        with pytest.raises(OperationalError):
            await create_schema(engine, metadata, wait_seconds=0.5)
    finally:
        await engine.dispose()
