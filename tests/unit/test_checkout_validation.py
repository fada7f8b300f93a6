"""PlaceOrder's bad input: INVALID_ARGUMENT naming the field, and nothing reserved, charged or published.

Moved from tests/e2e/test_place_order.py, where each case started the whole mesh
twice; the e2e suite keeps the unknown-product case against real databases.
"""

from __future__ import annotations

from datetime import date

import pytest

from checkout.service import CheckoutService
from mesh.errors import InvalidArgument
from mesh.money import Money
from ordermesh.checkout.v1 import checkout_pb2
from ordermesh.common.v1 import common_pb2
from tests.unit.checkout_fakes import checkout
from tests.unit.rpc import NO_CONTEXT

CARD = common_pb2.CreditCard(number="4432801561520454", cvv=672, expiration_year=2039, expiration_month=1)
HOME = common_pb2.Address(street_address="1 Main St", city="Springfield", state="IL", country="US", zip_code="62701")
PRICES = {"sku-1001": Money.of("USD", 67, 990_000_000), "sku-1002": Money.of("USD", 4)}
STOCK = {"sku-1001": 25, "sku-1002": 10}


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("request_id", {"request_id": ""}),
        ("items", {"items": []}),
        ("items[0].quantity", {"items": [common_pb2.LineItem(product_id="sku-1001", quantity=0)]}),
        ("items[0].product_id", {"items": [common_pb2.LineItem(product_id="sku-nope", quantity=1)]}),
        (
            "items[1].product_id",
            {
                "items": [
                    common_pb2.LineItem(product_id="sku-1001", quantity=1),
                    common_pb2.LineItem(product_id="sku-nope", quantity=1),
                ]
            },
        ),
        (
            "credit_card.number",
            {"credit_card": common_pb2.CreditCard(number="1234", cvv=123, expiration_year=2039, expiration_month=1)},
        ),
        ("email", {"email": "nobody"}),
    ],
)
async def test_bad_input_names_the_field_and_creates_nothing(field: str, change: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "request_id": "r-bad",
        "user_id": "mallory",
        "items": [common_pb2.LineItem(product_id="sku-1001", quantity=1)],
        "address": HOME,
        "email": "m@example.com",
        "credit_card": CARD,
        **change,
    }
    world = checkout(PRICES, dict(STOCK))
    service = CheckoutService(world.place_order, lambda: date(2030, 1, 1), max_lines=100, max_quantity=1000)
    with pytest.raises(InvalidArgument) as caught:
        await service.PlaceOrder(checkout_pb2.PlaceOrderRequest(**fields), NO_CONTEXT)  # type: ignore[arg-type]
    # The interceptor sends the message as the status details: "field: description".
    assert f"{field}:" in caught.value.message
    assert field in [v.field for v in caught.value.violations]
    # An unknown product is found by the reservation itself (the catalog refuses
    # it, NOT_FOUND): nothing was reserved either way.
    assert world.catalog.reservations == {} and world.catalog.stock == STOCK
    assert world.payment.deadlines == [] and world.publisher.published == []


async def test_good_input_reaches_the_saga() -> None:
    # The cases above fail for their field, not because nothing could ever pass.
    world = checkout(PRICES, dict(STOCK))
    service = CheckoutService(world.place_order, lambda: date(2030, 1, 1), max_lines=100, max_quantity=1000)
    request = checkout_pb2.PlaceOrderRequest(
        request_id="r-good",
        user_id="ada",
        items=[common_pb2.LineItem(product_id="sku-1001", quantity=1)],
        address=HOME,
        email="ada@example.com",
        credit_card=CARD,
    )
    answer = await service.PlaceOrder(request, NO_CONTEXT)
    assert answer.status == common_pb2.PAID and world.catalog.reserve_calls == [answer.order_id]
