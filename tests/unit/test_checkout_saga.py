"""The PlaceOrder saga (checkout/saga.py) over fake catalog, shipping, payment and publisher."""

from __future__ import annotations

import json
from datetime import UTC

import grpc
import pytest
from google.rpc import error_details_pb2

from mesh.errors import Relayed
from mesh.money import Money
from ordermesh.catalog.v1 import catalog_pb2
from ordermesh.checkout.v1 import checkout_pb2
from ordermesh.common.v1 import common_pb2
from tests.unit.checkout_fakes import NOW, SHIPPING_COST, checkout
from tests.unit.rpc import rpc_error

CARD = common_pb2.CreditCard(number="4432801561520454", cvv=672, expiration_year=2039, expiration_month=1)
HOME = common_pb2.Address(street_address="1 Main St", city="Springfield", state="IL", country="US", zip_code="62701")
PRICES = {
    "sku-pen": Money.of("USD", 24),
    "sku-ink": Money.of("USD", 9, 500_000_000),
    "sku-desk": Money.of("USD", 54, 10_000_000),
}
STOCK = {"sku-pen": 30, "sku-ink": 5, "sku-desk": 3}


def request(*lines: tuple[str, int], request_id: str = "r-1") -> checkout_pb2.PlaceOrderRequest:
    return checkout_pb2.PlaceOrderRequest(
        request_id=request_id,
        user_id="ada",
        items=[common_pb2.LineItem(product_id=p, quantity=q) for p, q in lines],
        address=HOME,
        email="ada@example.com",
        credit_card=CARD,
    )


async def test_a_normal_order_is_paid_and_its_capture_published() -> None:
    world = checkout(PRICES, dict(STOCK))
    answer = await world.place_order(request(("sku-pen", 2), ("sku-ink", 1)))
    assert answer.status == common_pb2.PAID and answer.order_id.startswith("o0-")
    # 2 x 24.00 + 9.50 + 5.99 shipping
    assert Money.from_proto(answer.total) == Money.of("USD", 63, 490_000_000)
    assert Money.from_proto(answer.shipping_cost) == SHIPPING_COST
    [charge] = world.payment.charges
    assert (charge.order_id, charge.amount, charge.credit_card) == (answer.order_id, answer.total, CARD)
    assert world.payment.deadlines == [3], "the charge runs under the payment deadline"
    [event] = world.publisher.envelopes()
    assert event.WhichOneof("payload") == "payment_captured"
    assert event.event_id == f"{answer.order_id}:payment", "a re-run publishes the same event id"
    assert event.payment_captured.transaction_id == f"txn-{answer.order_id}"
    assert event.payment_captured.amount == answer.total
    assert event.occurred_at.ToDatetime(tzinfo=UTC) == NOW
    draft = world.catalog.reservations[answer.order_id].draft
    assert draft.initial_status == common_pb2.PENDING and draft.request_id == "r-1" and draft.address == HOME
    assert Money.from_proto(draft.shipping_cost) == SHIPPING_COST
    assert world.catalog.stock["sku-pen"] == 28 and world.catalog.release_calls == []


async def test_a_declined_card_releases_the_stock_and_cancels_with_the_reason() -> None:
    world = checkout(PRICES, dict(STOCK))
    world.payment.decline_reason = "card declined"
    answer = await world.place_order(request(("sku-ink", 3)))
    assert answer.status == common_pb2.CANCELLED and answer.failure_reason == "card declined"
    assert world.catalog.release_calls == [answer.order_id]
    assert world.catalog.stock["sku-ink"] == 5, "the reserved units went back"
    [event] = world.publisher.envelopes()
    assert event.WhichOneof("payload") == "payment_declined" and event.payment_declined.reason == "card declined"


@pytest.mark.parametrize(
    "failure",
    [rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED), rpc_error(grpc.StatusCode.UNAVAILABLE)],
    ids=["deadline", "unavailable"],
)
@pytest.mark.parametrize(
    ("threshold", "expected"),
    [(10_000, common_pb2.PENDING), (1, common_pb2.AWAITING_REVIEW)],
    ids=["pending", "review"],
)
async def test_an_unknown_payment_outcome_is_left_for_reconciliation(
    failure: grpc.aio.AioRpcError, threshold: int, expected: common_pb2.OrderStatus.ValueType
) -> None:
    world = checkout(PRICES, dict(STOCK), review_threshold_units=threshold)
    world.payment.failure = failure
    answer = await world.place_order(request(("sku-pen", 1)))
    assert answer.status == expected and answer.failure_reason == ""
    assert world.payment.deadlines == [3], "payment was asked once"
    assert world.publisher.published == [], "nothing is known yet: reconcile asks payment later"
    assert world.catalog.release_calls == [] and not world.catalog.reservations[answer.order_id].released


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [(60, common_pb2.AWAITING_REVIEW), (61, common_pb2.PAID)],
    ids=["at-threshold", "below-threshold"],
)
async def test_orders_at_or_above_the_review_threshold_are_charged_and_await_review(
    threshold: int, expected: common_pb2.OrderStatus.ValueType
) -> None:
    world = checkout(PRICES, dict(STOCK), review_threshold_units=threshold)
    answer = await world.place_order(request(("sku-desk", 1)))  # 54.01 + 5.99 = 60.00
    assert Money.from_proto(answer.total) == Money.of("USD", 60)
    assert answer.status == expected
    review = expected == common_pb2.AWAITING_REVIEW
    draft = world.catalog.reservations[answer.order_id].draft
    assert draft.initial_status == (common_pb2.AWAITING_REVIEW if review else common_pb2.PENDING)
    assert len(world.payment.charges) == 1, "a review order is charged too: the card is never kept"
    assert [e.WhichOneof("payload") for e in world.publisher.envelopes()] == ["payment_captured"]


async def test_short_stock_is_failed_precondition_naming_the_product_and_charges_nothing() -> None:
    world = checkout(PRICES, dict(STOCK))
    with pytest.raises(Relayed) as caught:
        await world.place_order(request(("sku-ink", 1), ("sku-pen", 31)))
    assert caught.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.message == "product sku-pen: requested 31, available 30"
    failure = error_details_pb2.PreconditionFailure()
    assert caught.value.details()[0].Unpack(failure)
    assert [v.subject for v in failure.violations] == ["products/sku-pen"]
    assert world.payment.deadlines == [] and world.publisher.published == []
    assert world.catalog.stock == STOCK
    # The failed attempt gave its claim up: a retry (stock added meanwhile) runs at once, same order id.
    claimed = json.loads(world.redis.values["checkout:request:r-1"])["order_id"]
    world.catalog.stock["sku-pen"] = 31
    retry = await world.place_order(request(("sku-ink", 1), ("sku-pen", 31)))
    assert (retry.order_id, retry.status) == (claimed, common_pb2.PAID)


async def test_a_retry_after_the_reservation_was_released_is_cancelled_and_never_charged() -> None:
    world = checkout(PRICES, dict(STOCK))
    # The first attempt reserved, then died before payment answered.
    world.payment.failure = RuntimeError("checkout died mid-charge")
    with pytest.raises(RuntimeError):
        await world.place_order(request(("sku-pen", 2)))
    [order_id] = world.catalog.reservations
    # Meanwhile the order context expired the order and its stock went back.
    await world.catalog.ReleaseStock(catalog_pb2.ReleaseStockRequest(order_id=order_id))
    world.payment.failure = None
    answer = await world.place_order(request(("sku-pen", 2)))
    assert answer.order_id == order_id and answer.status == common_pb2.CANCELLED
    assert answer.failure_reason == "the order was cancelled before it was paid"
    assert world.catalog.reserve_calls == [order_id, order_id], "ReserveStock answered already_reserved + released"
    assert world.payment.charges == [] and world.publisher.published == []
    assert world.catalog.stock["sku-pen"] == 30
    assert await world.place_order(request(("sku-pen", 2))) == answer, "the cancellation is the stored answer"
    assert world.payment.charges == []


async def test_a_repeat_answers_the_stored_answer_without_doing_anything_again() -> None:
    world = checkout(PRICES, dict(STOCK))
    first = await world.place_order(request(("sku-pen", 1)))
    again = await world.place_order(request(("sku-pen", 1)))
    assert again == first and first.status == common_pb2.PAID
    assert world.catalog.reserve_calls == [first.order_id]
    assert len(world.payment.charges) == 1 and len(world.publisher.published) == 1
    assert world.catalog.stock["sku-pen"] == 29
    other = await world.place_order(request(("sku-pen", 1), request_id="r-2"))
    assert other.order_id != first.order_id, "another request id is another order"
