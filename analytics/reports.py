"""The three questions the read model answers: best sellers of a day, sales over
time, and orders of every shard by email, user or status."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from analytics.facts import Status
from analytics.ports import ReportStore
from mesh.errors import InvalidArgument
from mesh.money import Money
from mesh.paging import decode_position, encode_position

DEFAULT_TOP, MAX_TOP = 10, 100
DEFAULT_PAGE, MAX_PAGE = 50, 500
MAX_BUCKETS = 1000  # per SalesSummary call: 41 days of hours, 2.7 years of days


class Period(StrEnum):
    HOUR = "HOUR"
    DAY = "DAY"

    @property
    def length(self) -> timedelta:
        return timedelta(hours=1) if self is Period.HOUR else timedelta(days=1)

    def floor(self, at: datetime) -> datetime:
        hour = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        return hour if self is Period.HOUR else hour.replace(hour=0)

    def ceil(self, at: datetime) -> datetime:
        start = self.floor(at)
        return start if start == at else start + self.length


@dataclass(frozen=True)
class ProductSales:
    product_id: str
    units: int
    revenue: Money


@dataclass(frozen=True)
class SalesRow:
    """The orders of one bucket in one status and currency (what the store sums)."""

    start: datetime
    status: Status
    orders: int
    revenue: Money


@dataclass(frozen=True)
class SalesBucket:
    start: datetime
    orders: int  # every order created in the bucket
    revenue: Money  # the totals of those not cancelled
    by_status: tuple[SalesRow, ...]


@dataclass(frozen=True)
class OrderFilter:
    email: str = ""
    user_id: str = ""
    status: Status | None = None
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before


@dataclass(frozen=True)
class OrderSummary:
    order_id: str
    user_id: str
    email: str
    status: Status
    total: Money
    created_at: datetime


@dataclass(frozen=True)
class OrderPage:
    orders: list[OrderSummary]
    next_page_token: str  # empty on the last page


class Reports:
    def __init__(self, store: ReportStore) -> None:
        self._store = store

    async def top_products(self, day: date, limit: int) -> list[ProductSales]:
        if limit < 0:
            raise InvalidArgument.one("limit", "must not be negative")
        return await self._store.top_products(day, min(limit or DEFAULT_TOP, MAX_TOP))

    async def sales_summary(self, since: datetime, until: datetime, period: Period) -> list[SalesBucket]:
        if until <= since:
            raise InvalidArgument.one("to", "must be after from")
        start, end = period.floor(since), period.ceil(until)
        if (end - start) / period.length > MAX_BUCKETS:
            raise InvalidArgument.one("to", f"spans more than {MAX_BUCKETS} {period.value.lower()}s after from")
        return buckets(await self._store.sales(start, end, period is Period.DAY))

    async def search(self, where: OrderFilter, page_size: int, page_token: str) -> OrderPage:
        if page_size < 0:
            raise InvalidArgument.one("page_size", "must not be negative")
        size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
        # One extra row tells whether another page exists.
        rows = await self._store.search(where, decode_position(page_token), size + 1)
        page = rows[:size]
        more = len(rows) > size
        return OrderPage(page, encode_position(page[-1].created_at, page[-1].order_id) if more else "")


def buckets(rows: Sequence[SalesRow]) -> list[SalesBucket]:
    """One bucket per start and currency, by start then currency; a bucket's
    statuses in the order of the order lifecycle. Money is never added across
    currencies."""
    grouped: dict[tuple[datetime, str], list[SalesRow]] = {}
    for row in rows:
        grouped.setdefault((row.start, row.revenue.currency), []).append(row)
    order = list(Status)
    result = []
    for (start, currency), group in sorted(grouped.items()):
        by_status = tuple(sorted(group, key=lambda row: order.index(row.status)))
        revenue = Money(currency, 0)
        for row in by_status:
            if row.status is not Status.CANCELLED:
                revenue += row.revenue
        result.append(SalesBucket(start, sum(row.orders for row in by_status), revenue, by_status))
    return result
