"""Replicas starting together create the schema together (two catalog or order
pods on one MariaDB): every one of them must start."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import inspect

from mesh.db import create_engine, create_schema
from mesh.local.procs import MariaDBServer
from order.models import metadata

pytestmark = pytest.mark.mariadb


@pytest.mark.parametrize("attempts, survives", [(1, False), (5, True)])
async def test_replicas_creating_the_schema_at_once_all_start(
    mariadb_server: MariaDBServer, attempts: int, survives: bool
) -> None:
    """With one attempt (no retry) the race shows: some replica fails with
    "already exists"; with the retry every replica starts."""
    failures = 0
    for _ in range(6):  # fresh databases until the race showed, or six tries
        name = f"race_{uuid.uuid4().hex[:10]}"
        mariadb_server.create_database(name)
        engines = [create_engine(mariadb_server.url(name), pool_size=1) for _ in range(4)]
        try:
            outcomes = await asyncio.gather(
                *(create_schema(engine, metadata, attempts=attempts) for engine in engines), return_exceptions=True
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
