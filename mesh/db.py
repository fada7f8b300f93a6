"""SQLAlchemy 2 async engines, schema creation and a unit of work.

SQLite (aiosqlite) is the embedded default; MariaDB/MySQL use asyncmy
(``mysql+asyncmy://user:pw@host:port/db``). Domain code never sees these types:
each context's adapter module does its SQL through a UnitOfWork.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, MetaData, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

log = logging.getLogger(__name__)
T = TypeVar("T")

READONLY = "ordermesh_readonly"
SQLITE_CACHE_KIB = 512  # page cache per SQLite connection, see _sqlite_engine


@asynccontextmanager
async def reading(engine: AsyncEngine, *, snapshot: bool = False) -> AsyncIterator[AsyncConnection]:
    """A connection for reads only (on SQLite it takes no write lock).

    ``snapshot``: every statement sees the same committed state. SQLite's read
    transaction always does; MariaDB's READ COMMITTED (see ``create_engine``)
    takes a fresh view per statement, so a row and its children read by two
    statements could straddle a commit (an order SHIPPING with a history that
    already says SHIPPED): REPEATABLE READ reads them all from one view.
    """
    async with engine.connect() as connection:
        options: dict[str, Any] = {READONLY: True}
        if snapshot and engine.dialect.name != "sqlite":
            options["isolation_level"] = "REPEATABLE READ"
        yield await connection.execution_options(**options)


def create_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, echo=echo)
    return create_async_engine(
        url,
        echo=echo,
        hide_parameters=True,  # see _sqlite_engine
        # Correctness here rests on row locks and unique keys, never on
        # repeatable reads; READ COMMITTED also drops InnoDB's gap locks, the
        # usual source of deadlocks between concurrent inserts.
        isolation_level="READ COMMITTED",
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
    )


def _sqlite_engine(url: str, *, echo: bool) -> AsyncEngine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        url,
        echo=echo,
        # An error's text leaves out the statement's values: they hold card
        # digits, emails and addresses, and errors reach logs and spans.
        hide_parameters=True,
        connect_args={"timeout": 30},
        # No rollback on return to the pool: every connection here ends its own
        # transaction (a UnitOfWork commits or rolls back, and closing a read
        # connection rolls back its BEGIN), and each rollback is one more trip to
        # the driver's thread.
        pool_reset_on_return=None,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (below) instead of the driver's lazy one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Each pooled connection keeps a page cache of its own (2 MiB by default,
        # up to 15 connections): the soak saw it fill for minutes and read it as
        # growth. The hot pages (B-tree roots and inner pages) fit in a little;
        # the rest is in the OS page cache anyway, a read() away.
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front: a deferred transaction that
        # reads and then writes can fail with SQLITE_BUSY without waiting, and
        # SQLite has one writer anyway. Reads (see ``reading``) need no lock:
        # in WAL mode they never wait for the writer.
        readonly = connection.get_execution_options().get(READONLY, False)
        statement = "BEGIN" if readonly else "BEGIN IMMEDIATE"
        # Straight to aiosqlite: one trip to its thread instead of three (a cursor
        # is opened, executed and closed for a statement sent through SQLAlchemy).
        dbapi_connection = connection.connection.dbapi_connection
        try:
            dbapi_connection.run_async(lambda driver: driver.execute(statement))
        except sqlite3.Error as error:
            raise OperationalError(statement, None, error) from error
        except BaseException:
            # Cancelled (a call dropped mid-way) while the driver's thread ran the
            # BEGIN: it runs all the same, but SQLAlchemy saw no transaction begin
            # and will not end it, and the connection went back to the pool inside
            # it, holding SQLite's write lock ("database is locked" for every other
            # writer, "cannot start a transaction within a transaction" for its
            # next user). The thread runs statements in order: a ROLLBACK queued
            # now ends that BEGIN, or finds nothing to end.
            with contextlib.suppress(BaseException):
                dbapi_connection.run_async(lambda driver: driver.execute("ROLLBACK"))
            raise

    return engine


async def create_schema(engine: AsyncEngine, metadata: MetaData, wait_seconds: float = 60.0) -> None:
    """Create missing tables, and missing indexes of tables that exist (an index
    added to the models reaches databases made before it; InnoDB builds it
    online). Idempotent. Schema changes beyond these additive ones need a
    migration tool; none is needed yet.

    Tried again (with backoff, for up to ``wait_seconds``) when it fails:
    - the database is not answering yet: in a cluster it starts with the mesh,
      and a process that exits instead is restarted only after a back-off;
    - replicas starting together race: each sees a table missing, one creates
      it and the other's CREATE fails ("already exists"; MySQL's DDL is not
      transactional). Looking again finds it.
    """
    deadline = time.monotonic() + wait_seconds
    delay = 0.05
    while True:
        try:
            async with engine.begin() as connection:
                await connection.run_sync(metadata.create_all)
                await connection.run_sync(_create_missing_indexes, metadata)
            return
        except OperationalError as error:
            if time.monotonic() + delay > deadline:
                raise
            reason = str(error.orig or error).splitlines()[0]
            log.warning("database schema not created yet (%s): trying again in %.1f s", reason, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


def _create_missing_indexes(connection: Connection, metadata: MetaData) -> None:
    for table in metadata.sorted_tables:
        for index in table.indexes:
            index.create(connection, checkfirst=True)


# One asyncio lock per SQLite engine (and event loop): see UnitOfWork.
_sqlite_writers: weakref.WeakKeyDictionary[Engine, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _writer_lock(engine: AsyncEngine) -> asyncio.Lock | None:
    if engine.dialect.name != "sqlite":
        return None
    loop = asyncio.get_running_loop()
    held = _sqlite_writers.get(engine.sync_engine)
    if held is None or held[0] is not loop:
        held = _sqlite_writers[engine.sync_engine] = (loop, asyncio.Lock())
    return held[1]


class UnitOfWork:
    """One transaction: rolls back unless :meth:`commit` was called.

    async with UnitOfWork(engine) as uow:
        await uow.connection.execute(...)
        await uow.commit()

    On SQLite, a process's write transactions queue on an asyncio lock. SQLite
    has one writer per file anyway, and a writer that finds it taken sleeps in
    SQLite's busy handler (1, 2, 5 ... up to 100 ms per try), which under load
    stalled every writer behind the first; a queue hands the lock over at once.
    It also keeps the pool at one writing connection instead of opening (and
    closing) overflow connections, a thread each, for writers that would wait.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None
        self._committed = False
        self._lock: asyncio.Lock | None = None

    @property
    def connection(self) -> AsyncConnection:
        if self._connection is None:
            raise RuntimeError("UnitOfWork used outside 'async with'")
        return self._connection

    async def __aenter__(self) -> UnitOfWork:
        lock = _writer_lock(self._engine)
        if lock is not None:
            await lock.acquire()
            self._lock = lock
        try:
            self._connection = await self._engine.connect()
            await self._connection.begin()
        except BaseException:
            with contextlib.suppress(Exception):  # the error that stopped us is the one to see
                await self._close()
            raise
        return self

    async def commit(self) -> None:
        await self.connection.commit()
        self._committed = True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        lock, self._lock = self._lock, None
        try:
            if connection is not None:
                try:
                    if not self._committed:
                        await connection.rollback()
                finally:
                    await connection.close()
        finally:
            if lock is not None:
                lock.release()


async def run_transaction(
    engine: AsyncEngine,
    work: Callable[[AsyncConnection], Awaitable[T]],
    *,
    attempts: int = 6,
    retry_unique: bool = False,
) -> T:
    """``work`` in one transaction, committed; run again on fresh state (jittered
    backoff, up to ``attempts`` runs) after a deadlock or a lock wait timeout.
    Data a column cannot hold (DataError) fails the same way every time and is
    raised at once; so is a unique-key violation, unless ``retry_unique``: for
    work whose unique keys only ever collide with a concurrent twin that the
    next run sees committed."""
    for attempt in range(attempts):
        try:
            async with UnitOfWork(engine) as uow:
                result = await work(uow.connection)
                await uow.commit()
                return result
        except DataError:
            raise
        except IntegrityError:
            if not retry_unique or attempt == attempts - 1:
                raise
        except DBAPIError as error:
            if attempt == attempts - 1 or error.connection_invalidated:
                raise
        await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))
    raise AssertionError("unreachable")


def is_unique_violation(error: BaseException) -> bool:
    """True when an INSERT lost a race on a unique key (both backends)."""
    return isinstance(error, IntegrityError)


async def ping(engine: AsyncEngine) -> bool:
    try:
        async with reading(engine) as connection:
            await connection.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - readiness reports any failure as not ready
        return False


def as_utc(value: datetime) -> datetime:
    """A time read back from SQL, in UTC: SQLite returns naive datetimes, and
    every time the mesh writes is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
