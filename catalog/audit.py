"""The auditor: does Redis agree with SQL, product by product and order by order?

At a quiet point (no calls in flight, refills finished), per product:

    allocated + unflushed journal = Redis counter + refills in flight + stranded
    0 <= stranded <= allocated <= stock,  counter >= 0

(the unflushed journal is the net change Redis made that SQL has not applied,
negative for sales; a refill is in flight between its SQL and Lua steps).
And per order: none reserved on both paths, none given back twice. Stranded
units (a Redis that lost its data) are reported until an operator reclaims them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from catalog.ledger import Ledger
from catalog.redis_stock import RedisStock
from catalog.sql_path import RELEASED, RESERVED, SqlPath
from catalog.stock import SQL_SOURCE


@dataclass(frozen=True)
class AuditRow:
    product_id: str
    stock: int
    allocated: int
    stranded: int
    counter: int
    unflushed: int
    in_flight: int

    @property
    def ok(self) -> bool:
        if not 0 <= self.stranded <= self.allocated <= self.stock or self.counter < 0:
            return False
        return self.allocated + self.unflushed == self.counter + self.in_flight + self.stranded

    @property
    def verdict(self) -> str:
        if not self.ok:
            return "MISMATCH"
        return "STRANDED" if self.stranded else "ok"


@dataclass
class Audit:
    sql_epoch: str | None
    redis_epoch: str | None
    rows: list[AuditRow]
    reserved_twice: list[str] = field(default_factory=list)
    released_twice: list[str] = field(default_factory=list)
    unpublished: int = 0

    @property
    def epoch_ok(self) -> bool:
        # No epoch yet (nothing ever allocated) is fine; two different ones are not.
        return self.sql_epoch == self.redis_epoch or (self.redis_epoch is None and not self.allocated)

    @property
    def allocated(self) -> int:
        return sum(row.allocated - row.stranded for row in self.rows)

    @property
    def clean(self) -> bool:
        return (
            self.epoch_ok
            and all(row.verdict == "ok" for row in self.rows)
            and not self.reserved_twice
            and not self.released_twice
        )


async def audit(
    redis_stock: RedisStock, ledger: Ledger, sql_path: SqlPath, *, looks: int = 3, pause: float = 0.2
) -> Audit:
    """Audit, looking again (up to ``looks`` times) while something is off.

    SQL and Redis are read one after the other, not in one snapshot: a refill or
    a sale that lands between the two reads looks like a mismatch for a moment
    (the refiller keeps working at a quiet point). A real one is still there
    when looked at again; only that is reported."""
    result = await _look(redis_stock, ledger, sql_path)
    for _ in range(looks - 1):
        if result.clean:
            break
        await asyncio.sleep(pause)
        result = await _look(redis_stock, ledger, sql_path)
    return result


async def _look(redis_stock: RedisStock, ledger: Ledger, sql_path: SqlPath) -> Audit:
    sql_epoch, redis_epoch = await ledger.current_epoch(), await redis_stock.epoch()
    levels = await ledger.levels()
    in_redis = sql_epoch is not None and sql_epoch == redis_epoch
    unflushed = await redis_stock.journal_totals() if in_redis else {}
    product_ids = sorted(set(levels) | set(unflushed))
    counters = await redis_stock.counters(sql_epoch, product_ids) if in_redis and sql_epoch else {}
    in_flight: dict[str, int] = {}
    if sql_epoch is not None:
        pending = await ledger.pending_refills(sql_epoch)
        applied = await redis_stock.refills_applied([r.refill_id for r in pending]) if in_redis else set()
        for refill in pending:
            if refill.refill_id not in applied:
                for pid, units in refill.units.items():
                    in_flight[pid] = in_flight.get(pid, 0) + units
    rows = []
    for pid in product_ids:
        level = levels.get(pid)
        stock, allocated, stranded = (level.stock, level.allocated, level.stranded) if level else (0, 0, 0)
        rows.append(
            AuditRow(
                pid, stock, allocated, stranded, counters.get(pid, 0), unflushed.get(pid, 0), in_flight.get(pid, 0)
            )
        )
    reservations = [r for r in await sql_path.reservations() if r.state in (RESERVED, RELEASED)]
    markers = await redis_stock.markers([r.order_id for r in reservations])
    twice = sorted(o for o, m in markers.items() if m.source != SQL_SOURCE)
    return Audit(
        sql_epoch,
        redis_epoch,
        rows,
        reserved_twice=twice,
        released_twice=await ledger.released_twice(),
        unpublished=await sql_path.outbox_size(),
    )


def render(result: Audit) -> str:
    columns = ("stock", 8), ("allocated", 9), ("stranded", 8), ("redis", 8), ("unflushed", 9), ("refilling", 9)
    lines = [f"{'product':<20} " + " ".join(f"{name:>{width}}" for name, width in columns) + "  check"]
    for row in result.rows:
        lines.append(
            f"{row.product_id:<20} {row.stock:>8} {row.allocated:>9} {row.stranded:>8} {row.counter:>8} "
            f"{row.unflushed:>9} {row.in_flight:>9}  {row.verdict}"
        )
    bad = sum(row.verdict != "ok" for row in result.rows)
    lines.append(f"{len(result.rows)} products, {bad} not ok")
    if not result.epoch_ok:
        lines.append(
            f"EPOCH: SQL is in {result.sql_epoch}, Redis in {result.redis_epoch}: Redis lost its data or belongs "
            "to another database; the catalog strands the old allocation at its next refill"
        )
    stranded = sum(row.stranded for row in result.rows)
    if stranded:
        lines.append(f"STRANDED: {stranded} units held by a lost Redis; `python -m catalog reclaim` returns them")
    if result.reserved_twice:
        lines.append(f"RESERVED TWICE (Redis and SQL): {', '.join(result.reserved_twice)}")
    if result.released_twice:
        lines.append(f"RELEASED TWICE: {', '.join(result.released_twice)}")
    if result.unpublished:
        lines.append(f"{result.unpublished} SQL-path orders not yet published (the relay runs in every catalog)")
    lines.append("clean" if result.clean else "NOT CLEAN")
    return "\n".join(lines)
