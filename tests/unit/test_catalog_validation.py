"""CatalogService's bad input: INVALID_ARGUMENT naming the field, and nothing deducted or announced.

The ReserveStock cases moved from tests/integration/test_stock.py, where each
ran on real Redis with SQLite and MariaDB; that file keeps the other-currency
case (refused by the engine, past the servicer's checks) on real stores. Here
the servicer and the real StockEngine run over fakes that record every
deduction (Redis counters, SQL path): a bad request must reach neither.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from catalog.products import Catalog, Product
from catalog.service import CatalogService
from catalog.stock import Limits
from mesh.errors import InvalidArgument
from mesh.money import Money
from ordermesh.catalog.v1 import catalog_pb2
from ordermesh.common.v1 import common_pb2
from tests.unit.rpc import NO_CONTEXT
from tests.unit.stock_fakes import Stock, product, stock_engine

TYPEWRITER, CAMERA = "sku-1001", "sku-1002"
PRODUCTS = [product(TYPEWRITER, Money.of("USD", 67, 990_000_000)), product(CAMERA, Money.of("USD", 129, 950_000_000))]


class ProductRows:
    """catalog.products.ProductStore over a list."""

    def __init__(self, products: list[Product]) -> None:
        self.products = {p.id: p for p in products}
        self.reads = 0

    async def page_after(self, last_id: str, limit: int) -> list[Product]:
        self.reads += 1
        return [p for pid, p in sorted(self.products.items()) if pid > last_id][:limit]

    async def get(self, product_id: str) -> Product | None:
        self.reads += 1
        return self.products.get(product_id)


@pytest.fixture
async def stock() -> AsyncIterator[Stock]:
    under_test = stock_engine(PRODUCTS, counters={TYPEWRITER: 20, CAMERA: 20}, unallocated={TYPEWRITER: 5, CAMERA: 20})
    yield under_test
    await under_test.engine.close()


def servicer(stock: Stock, rows: ProductRows | None = None) -> CatalogService:
    return CatalogService(Catalog(rows or ProductRows(PRODUCTS)), stock.engine, Limits())


def line(product_id: str, quantity: int) -> common_pb2.LineItem:
    return common_pb2.LineItem(product_id=product_id, quantity=quantity)


DRAFT = common_pb2.OrderDraft(user_id="u1")
BAD = {
    "items[0].quantity (zero)": (
        catalog_pb2.ReserveStockRequest(order_id="o", items=[line(CAMERA, 0)], draft=DRAFT),
        "items[0].quantity",
    ),
    "items[0].quantity (negative)": (
        catalog_pb2.ReserveStockRequest(order_id="o", items=[line(CAMERA, -3)], draft=DRAFT),
        "items[0].quantity",
    ),
    "items[1].quantity (above max)": (
        catalog_pb2.ReserveStockRequest(order_id="o", items=[line(CAMERA, 1), line(TYPEWRITER, 1001)], draft=DRAFT),
        "items[1].quantity",
    ),
    "order_id (empty)": (
        catalog_pb2.ReserveStockRequest(order_id="", items=[line(CAMERA, 1)], draft=DRAFT),
        "order_id",
    ),
    "items (none)": (catalog_pb2.ReserveStockRequest(order_id="o", draft=DRAFT), "items"),
    "items (too many)": (
        catalog_pb2.ReserveStockRequest(order_id="o", items=[line(CAMERA, 1)] * 101, draft=DRAFT),
        "items",
    ),
    "draft (missing)": (catalog_pb2.ReserveStockRequest(order_id="o", items=[line(CAMERA, 1)]), "draft"),
    "draft.shipping_cost (other currency)": (
        catalog_pb2.ReserveStockRequest(
            order_id="o",
            items=[line(CAMERA, 1)],
            draft=common_pb2.OrderDraft(user_id="u1", shipping_cost=common_pb2.Money(currency_code="EUR", units=5)),
        ),
        "draft.shipping_cost.currency_code",
    ),
    "draft.initial_status (PAID)": (
        catalog_pb2.ReserveStockRequest(
            order_id="o",
            items=[line(CAMERA, 1)],
            draft=common_pb2.OrderDraft(user_id="u1", initial_status=common_pb2.PAID),
        ),
        "draft.initial_status",
    ),
    "draft.address.city (too long)": (
        catalog_pb2.ReserveStockRequest(
            order_id="o",
            items=[line(CAMERA, 1)],
            draft=common_pb2.OrderDraft(user_id="u1", address=common_pb2.Address(city="x" * 101)),
        ),
        "draft.address.city",
    ),
    "draft.address.street_address (too long, in any script)": (
        catalog_pb2.ReserveStockRequest(
            order_id="o",
            items=[line(CAMERA, 1)],
            draft=common_pb2.OrderDraft(user_id="u1", address=common_pb2.Address(street_address="東京都" * 67)),
        ),
        "draft.address.street_address",
    ),
    "draft.email (control character)": (
        catalog_pb2.ReserveStockRequest(
            order_id="o", items=[line(CAMERA, 1)], draft=common_pb2.OrderDraft(user_id="u1", email="a@b\x00c")
        ),
        "draft.email",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
async def test_bad_reservations_name_the_field_and_deduct_nothing(stock: Stock, case: str) -> None:
    request, field = BAD[case]
    with pytest.raises(InvalidArgument) as caught:
        await servicer(stock).ReserveStock(request, NO_CONTEXT)
    # The interceptor sends the message as the status details: "field: description".
    assert f"{field}:" in caught.value.message
    assert field in [v.field for v in caught.value.violations]
    assert stock.redis.calls == [] and stock.sql.calls == [], "no counter, journal or SQL row was touched"
    assert stock.redis.counters_ == {TYPEWRITER: 20, CAMERA: 20} and stock.quota.sales == []


async def test_a_good_reservation_goes_through(stock: Stock) -> None:
    # The cases above fail for their field: the same request made right deducts.
    request = catalog_pb2.ReserveStockRequest(order_id="o", items=[line(CAMERA, 1)], draft=DRAFT)
    reserved = await servicer(stock).ReserveStock(request, NO_CONTEXT)
    assert not reserved.already_reserved and (reserved.total.units, reserved.total.nanos) == (129, 950_000_000)
    assert stock.redis.counters_[CAMERA] == 19


@pytest.mark.parametrize(("product_id", "description"), [("", "is required"), ("x" * 65, "at most 64")])
async def test_a_bad_product_id_is_invalid_argument_before_any_read(
    stock: Stock, product_id: str, description: str
) -> None:
    rows = ProductRows(PRODUCTS)
    with pytest.raises(InvalidArgument, match=description) as caught:
        await servicer(stock, rows).GetProduct(catalog_pb2.GetProductRequest(id=product_id), NO_CONTEXT)
    assert [v.field for v in caught.value.violations] == ["id"]
    assert rows.reads == 0 and stock.redis.calls == []


async def test_negative_stock_is_invalid_argument_naming_stock(stock: Stock) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await servicer(stock).SetStock(catalog_pb2.SetStockRequest(product_id=CAMERA, stock=-1), NO_CONTEXT)
    assert [v.field for v in caught.value.violations] == ["stock"]
    assert stock.redis.calls == []
