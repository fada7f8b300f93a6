"""AnalyticsService servicer: validate, call the reports, map to the wire."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, date, datetime
from typing import Any, cast

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from analytics.facts import Status
from analytics.reports import MAX_PAGE, MAX_TOP, OrderFilter, OrderSummary, Period, Reports, SalesRow
from common.checks import Checks
from ordermesh.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from ordermesh.common.v1 import common_pb2

Context = grpc.aio.ServicerContext[Any, Any]
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# The wire's buckets; UNSPECIFIED is HOUR.
PERIODS = {
    analytics_pb2.BUCKET_UNSPECIFIED: Period.HOUR,
    analytics_pb2.HOUR: Period.HOUR,
    analytics_pb2.DAY: Period.DAY,
}
# The wire's statuses; UNSPECIFIED asks for every status.
STATUSES: dict[int, Status | None] = {common_pb2.ORDER_STATUS_UNSPECIFIED: None} | {
    common_pb2.OrderStatus.Value(s.value): s for s in Status
}


class AnalyticsService(analytics_pb2_grpc.AnalyticsServiceServicer):
    def __init__(self, reports: Reports) -> None:
        self._reports = reports

    async def TopProducts(
        self, request: analytics_pb2.TopProductsRequest, context: Context
    ) -> analytics_pb2.TopProductsResponse:
        check = Checks()
        day = _day(check, request.day)
        check.require(request.limit <= MAX_TOP, "limit", f"must be at most {MAX_TOP}")
        check.raise_if_any()
        assert day is not None
        products = await self._reports.top_products(day, request.limit)
        return analytics_pb2.TopProductsResponse(
            products=[
                analytics_pb2.ProductSales(product_id=p.product_id, units=p.units, revenue=p.revenue.to_proto())
                for p in products
            ]
        )

    async def SalesSummary(
        self, request: analytics_pb2.SalesSummaryRequest, context: Context
    ) -> analytics_pb2.SalesSummaryResponse:
        check = Checks()
        since = _time(check, request, "from", required=True)
        until = _time(check, request, "to", required=True)
        check.require(request.bucket in PERIODS, "bucket", "must be HOUR or DAY")
        check.raise_if_any()
        assert since is not None and until is not None
        buckets = await self._reports.sales_summary(since, until, PERIODS[request.bucket])
        return analytics_pb2.SalesSummaryResponse(
            buckets=[
                analytics_pb2.SalesBucket(
                    start=_timestamp(b.start),
                    orders=b.orders,
                    revenue=b.revenue.to_proto(),
                    by_status=[_status_sales(row) for row in b.by_status],
                )
                for b in buckets
            ]
        )

    async def SearchOrders(
        self, request: analytics_pb2.SearchOrdersRequest, context: Context
    ) -> analytics_pb2.SearchOrdersResponse:
        check = Checks()
        check.text(request.email, "email", 200)
        check.text(request.user_id, "user_id", 128)
        check.require(request.status in STATUSES, "status", "is not an order status")
        since = _time(check, request, "from")
        until = _time(check, request, "to")
        if since is not None and until is not None:
            check.require(until > since, "to", "must be after from")
        check.require(request.page_size <= MAX_PAGE, "page_size", f"must be at most {MAX_PAGE}")
        check.raise_if_any()
        where = OrderFilter(request.email, request.user_id, STATUSES[request.status], since, until)
        page = await self._reports.search(where, request.page_size, request.page_token)
        return analytics_pb2.SearchOrdersResponse(
            orders=[_summary(o) for o in page.orders], next_page_token=page.next_page_token
        )


def _day(check: Checks, value: str) -> date | None:
    """A day as YYYY-MM-DD, exactly (``date.fromisoformat`` also takes 20300102 and 2030-W01-2)."""
    if not value:
        check.fail("day", "is required (YYYY-MM-DD, UTC)")
        return None
    if DAY.match(value):
        with contextlib.suppress(ValueError):  # 2030-02-30
            return date.fromisoformat(value)
    check.fail("day", f"must be a date as YYYY-MM-DD, got {value[:40]!r}")
    return None


def _time(check: Checks, request: Any, field: str, *, required: bool = False) -> datetime | None:
    """A Timestamp field of ``request`` as a UTC time. By name: ``from`` is a Python
    keyword, so the generated class has no attribute for it (only ``getattr``)."""
    if not request.HasField(field):
        if required:
            check.fail(field, "is required")
        return None
    value = cast(Timestamp, getattr(request, field))
    before = len(check.violations)
    check.timestamp(value, field)
    return value.ToDatetime(tzinfo=UTC) if len(check.violations) == before else None


def _timestamp(at: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


def _status(status: Status) -> common_pb2.OrderStatus.ValueType:
    return common_pb2.OrderStatus.Value(status.value)


def _status_sales(row: SalesRow) -> analytics_pb2.StatusSales:
    return analytics_pb2.StatusSales(status=_status(row.status), orders=row.orders, revenue=row.revenue.to_proto())


def _summary(order: OrderSummary) -> analytics_pb2.OrderSummary:
    return analytics_pb2.OrderSummary(
        order_id=order.order_id,
        user_id=order.user_id,
        email=order.email,
        status=_status(order.status),
        total=order.total.to_proto(),
        created_at=_timestamp(order.created_at),
    )
