"""The auditor: per product, does Redis agree with SQL plus the unflushed journal?

Conservation (DESIGN.md) at a quiet point: initial stock - Redis counter =
unflushed journal + (initial SQL stock - SQL stock), i.e. for every product
``redis counter = SQL stock + net unflushed journal``, and nothing below zero.
"""

from __future__ import annotations

from dataclasses import dataclass

from catalog.redis_stock import RedisStock
from catalog.sql_stock import SqlStock


@dataclass(frozen=True)
class AuditRow:
    product_id: str
    redis: int | None  # None: counter not loaded yet (SQL alone is the truth)
    unflushed: int
    sql: int

    @property
    def ok(self) -> bool:
        if self.sql < 0 or (self.redis is not None and self.redis < 0):
            return False
        if self.redis is None:
            return self.unflushed == 0
        return self.redis == self.sql + self.unflushed


async def audit(redis_stock: RedisStock, sql_stock: SqlStock) -> list[AuditRow]:
    sql = await sql_stock.all_stock()
    unflushed = await redis_stock.journal_totals()
    product_ids = sorted(set(sql) | set(unflushed))
    counters = await redis_stock.counters(product_ids)
    return [AuditRow(pid, counters.get(pid), unflushed.get(pid, 0), sql.get(pid, 0)) for pid in product_ids]


def render(rows: list[AuditRow]) -> str:
    lines = [f"{'product':<20} {'redis':>10} {'unflushed':>10} {'sql':>10}  check"]
    for row in rows:
        redis_value = "-" if row.redis is None else str(row.redis)
        verdict = "ok" if row.ok else "MISMATCH"
        lines.append(f"{row.product_id:<20} {redis_value:>10} {row.unflushed:>10} {row.sql:>10}  {verdict}")
    bad = sum(not row.ok for row in rows)
    lines.append(f"{len(rows)} products, {bad} mismatched")
    return "\n".join(lines)
