"""AnalyticsService: bad input is INVALID_ARGUMENT naming the field, before the
store is asked anything; good input reaches the store as the reports mean it,
and the answers are mapped to the wire (buckets: net revenue, statuses)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from analytics.facts import Status
from analytics.reports import OrderFilter, OrderSummary, ProductSales, Reports, SalesRow
from analytics.service import AnalyticsService
from mesh.errors import InvalidArgument
from mesh.money import Money
from mesh.paging import encode_position
from ordermesh.analytics.v1 import analytics_pb2
from ordermesh.common.v1 import common_pb2
from tests.analytics_support import stamp
from tests.unit.rpc import NO_CONTEXT

T0 = datetime(2030, 1, 2, 10, 15, tzinfo=UTC)
HOUR = datetime(2030, 1, 2, 10, tzinfo=UTC)


def usd(units: int) -> Money:
    return Money.of("USD", units)


class RecordingStore:
    """analytics.ports.ReportStore with canned answers; every call is kept."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.rows: list[SalesRow] = []
        self.orders: list[OrderSummary] = []

    async def top_products(self, day: date, limit: int) -> list[ProductSales]:
        self.calls.append(("top", day, limit))
        return [ProductSales("sku-1", 5, usd(50))]

    async def sales(self, start: datetime, end: datetime, by_day: bool) -> list[SalesRow]:
        self.calls.append(("sales", start, end, by_day))
        return self.rows

    async def search(self, where: OrderFilter, before: tuple[datetime, str] | None, limit: int) -> list[OrderSummary]:
        self.calls.append(("search", where, before, limit))
        return self.orders[:limit]


@pytest.fixture
def store() -> RecordingStore:
    return RecordingStore()


@pytest.fixture
def service(store: RecordingStore) -> AnalyticsService:
    return AnalyticsService(Reports(store))


def summary_request(
    since: datetime | None, until: datetime | None, bucket: int = 0
) -> analytics_pb2.SalesSummaryRequest:
    request = analytics_pb2.SalesSummaryRequest(bucket=bucket)  # type: ignore[arg-type]
    if since is not None:
        getattr(request, "from").CopyFrom(stamp(since))  # ``from`` is a Python keyword
    if until is not None:
        request.to.CopyFrom(stamp(until))
    return request


async def fields_of(call: object) -> list[str]:
    with pytest.raises(InvalidArgument) as caught:
        await call  # type: ignore[misc]
    return [v.field for v in caught.value.violations]


@pytest.mark.parametrize(
    ("day", "limit", "fields"),
    [
        ("", 0, ["day"]),
        ("2030-1-2", 0, ["day"]),
        ("20300102", 0, ["day"]),
        ("2030-W01-2", 0, ["day"]),
        ("2030-02-30", 0, ["day"]),
        ("2030-01-02", 101, ["limit"]),
        ("2030-01-02", -1, ["limit"]),
        ("yesterday", 500, ["day", "limit"]),
    ],
)
async def test_top_products_bad_input_names_the_field(
    service: AnalyticsService, store: RecordingStore, day: str, limit: int, fields: list[str]
) -> None:
    request = analytics_pb2.TopProductsRequest(day=day, limit=limit)
    assert await fields_of(service.TopProducts(request, NO_CONTEXT)) == fields
    assert store.calls == []


async def test_top_products_asks_for_the_day_and_ten_by_default(
    service: AnalyticsService, store: RecordingStore
) -> None:
    reply = await service.TopProducts(analytics_pb2.TopProductsRequest(day="2030-01-02"), NO_CONTEXT)
    assert store.calls == [("top", date(2030, 1, 2), 10)]
    [product] = reply.products
    assert (product.product_id, product.units, product.revenue.units, product.revenue.currency_code) == (
        "sku-1",
        5,
        50,
        "USD",
    )


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (summary_request(None, T0), ["from"]),
        (summary_request(T0, None), ["to"]),
        (summary_request(None, None, bucket=7), ["from", "to", "bucket"]),
        (summary_request(T0, T0), ["to"]),
        (summary_request(T0, datetime(2030, 1, 1, tzinfo=UTC)), ["to"]),
        (summary_request(T0, datetime(2030, 3, 1, tzinfo=UTC), analytics_pb2.HOUR), ["to"]),  # > 1,000 hours
        (summary_request(T0, datetime(2033, 1, 1, tzinfo=UTC), analytics_pb2.DAY), ["to"]),  # > 1,000 days
    ],
)
async def test_sales_summary_bad_input_names_the_field(
    service: AnalyticsService, store: RecordingStore, request_: analytics_pb2.SalesSummaryRequest, fields: list[str]
) -> None:
    assert await fields_of(service.SalesSummary(request_, NO_CONTEXT)) == fields
    assert store.calls == []


async def test_a_timestamp_out_of_range_names_its_part(service: AnalyticsService) -> None:
    request = summary_request(T0, T0)
    request.to.CopyFrom(Timestamp(seconds=10**12))
    assert await fields_of(service.SalesSummary(request, NO_CONTEXT)) == ["to.seconds"]


async def test_sales_summary_covers_whole_buckets(service: AnalyticsService, store: RecordingStore) -> None:
    until = datetime(2030, 1, 2, 12, 0, 1, tzinfo=UTC)
    await service.SalesSummary(summary_request(T0, until), NO_CONTEXT)
    await service.SalesSummary(summary_request(T0, until, analytics_pb2.DAY), NO_CONTEXT)
    assert store.calls == [
        ("sales", HOUR, datetime(2030, 1, 2, 13, tzinfo=UTC), False),
        ("sales", datetime(2030, 1, 2, tzinfo=UTC), datetime(2030, 1, 3, tzinfo=UTC), True),
    ]


async def test_a_bucket_counts_every_order_and_the_revenue_of_those_not_cancelled(
    service: AnalyticsService, store: RecordingStore
) -> None:
    store.rows = [
        SalesRow(HOUR, Status.CANCELLED, 1, usd(30)),
        SalesRow(HOUR, Status.PAID, 2, usd(100)),
        SalesRow(HOUR, Status.PAID, 1, Money.of("EUR", 9)),
        SalesRow(HOUR, Status.AWAITING_REVIEW, 1, usd(20_000)),
    ]
    reply = await service.SalesSummary(summary_request(T0, T0.replace(hour=11)), NO_CONTEXT)
    eur_bucket, usd_bucket = reply.buckets  # by currency: money is never added across currencies
    assert usd_bucket.start.ToDatetime(tzinfo=UTC) == HOUR
    assert (usd_bucket.orders, usd_bucket.revenue.units, usd_bucket.revenue.currency_code) == (4, 20_100, "USD")
    assert [(s.status, s.orders, s.revenue.units) for s in usd_bucket.by_status] == [
        (common_pb2.AWAITING_REVIEW, 1, 20_000),
        (common_pb2.PAID, 2, 100),
        (common_pb2.CANCELLED, 1, 30),
    ]
    assert (eur_bucket.orders, eur_bucket.revenue.units, eur_bucket.revenue.currency_code) == (1, 9, "EUR")


def search_request(**fields: object) -> analytics_pb2.SearchOrdersRequest:
    return analytics_pb2.SearchOrdersRequest(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (search_request(email="a" * 201), ["email"]),
        (search_request(user_id="u" * 129), ["user_id"]),
        (search_request(email="ada\n@example.com"), ["email"]),
        (search_request(status=42), ["status"]),
        (search_request(page_size=501), ["page_size"]),
        (search_request(page_size=-1), ["page_size"]),
        (search_request(page_token="not a token!"), ["page_token"]),
        (search_request(to=stamp(T0), **{"from": stamp(T0)}), ["to"]),
    ],
)
async def test_search_bad_input_names_the_field(
    service: AnalyticsService, store: RecordingStore, request_: analytics_pb2.SearchOrdersRequest, fields: list[str]
) -> None:
    assert await fields_of(service.SearchOrders(request_, NO_CONTEXT)) == fields
    assert store.calls == []


async def test_search_pages_with_a_token_after_the_last_order(service: AnalyticsService, store: RecordingStore) -> None:
    store.orders = [
        OrderSummary(f"o0-{n}", "ada", "ada@example.com", Status.PAID, usd(n), T0.replace(minute=50 - n))
        for n in range(3)
    ]
    request = search_request(email="Ada@Example.com", status=common_pb2.PAID, page_size=2, to=stamp(T0))
    first = await service.SearchOrders(request, NO_CONTEXT)
    assert [o.order_id for o in first.orders] == ["o0-0", "o0-1"]
    assert first.next_page_token == encode_position(T0.replace(minute=49), "o0-1")
    request.page_token = first.next_page_token
    await service.SearchOrders(request, NO_CONTEXT)
    where = OrderFilter("Ada@Example.com", "", Status.PAID, None, T0)
    assert store.calls == [
        ("search", where, None, 3),  # one more than the page: is there another page?
        ("search", where, (T0.replace(minute=49), "o0-1"), 3),
    ]
    assert first.orders[0].status == common_pb2.PAID
    assert first.orders[0].created_at.ToDatetime(tzinfo=UTC) == T0.replace(minute=50)
