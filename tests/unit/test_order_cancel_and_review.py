"""Cancel and review (order/lifecycle.py): compare-and-set against fulfilment, approval settles payment."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mesh.errors import FailedPrecondition, NotFound, Unavailable
from order.lifecycle import LifecycleConfig
from order.remote import PaymentState
from order.state import Status
from tests.unit.order_world import OrderWorld, order_world


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[OrderWorld]:
    async with order_world(tmp_path, LifecycleConfig()) as under_test:
        yield under_test


async def test_cancel_a_pending_order_with_its_reason(world: OrderWorld) -> None:
    order_id = await world.place()
    cancelled = await world.lifecycle.cancel(order_id, "changed my mind")
    assert (cancelled.status, cancelled.failure_reason) == (Status.CANCELLED, "changed my mind")
    assert await world.history(order_id) == ["PENDING", "CANCELLED"]
    default = await world.lifecycle.cancel(await world.place(), "")
    assert default.failure_reason == "cancelled by the customer"


@pytest.mark.parametrize(
    ("read", "meanwhile"),
    [([Status.PAID], Status.SHIPPING), ([], Status.PAID)],
    ids=["claimed-for-shipping", "paid"],
)
async def test_a_change_that_lands_between_read_and_write_makes_the_cancel_fail(
    world: OrderWorld, read: list[Status], meanwhile: Status
) -> None:
    order_id = await world.place()
    for status in read:
        await world.move(order_id, status, status.lower())

    async def another_replica() -> None:
        await world.move(order_id, meanwhile, "meanwhile")

    # The cancel reads a cancellable status; another change lands before the cancel writes.
    # (PENDING -> PAID -> CANCELLED would be legal: only the compare-and-set refuses it.)
    world.store.before_next_write = another_replica
    with pytest.raises(FailedPrecondition, match="changed meanwhile and can no longer be cancelled"):
        await world.lifecycle.cancel(order_id, "too slow")
    order = await world.order(order_id)
    assert order.status is meanwhile and order.failure_reason == ""
    assert await world.history(order_id) == ["PENDING", *read, meanwhile], "never both shipped and cancelled"


async def test_an_order_claimed_for_shipping_cannot_be_cancelled(world: OrderWorld) -> None:
    order_id = await world.place()
    await world.move(order_id, Status.PAID, "payment")
    await world.move(order_id, Status.SHIPPING, "shipping-0")
    with pytest.raises(FailedPrecondition, match="is SHIPPING and can no longer be cancelled"):
        await world.lifecycle.cancel(order_id, "")
    assert (await world.order(order_id)).status is Status.SHIPPING


async def _ship_failed(world: OrderWorld) -> str:
    order_id = await world.place()
    for status in (Status.PAID, Status.SHIPPING, Status.SHIP_FAILED):
        await world.move(order_id, status, status.lower())
    return order_id


async def test_a_failed_shipment_is_cancelled_only_once_shipping_says_it_does_not_exist(world: OrderWorld) -> None:
    order_id = await _ship_failed(world)
    world.remote.shipments[order_id] = "TRK-lost-reply"  # the failed call shipped: its reply was lost
    with pytest.raises(FailedPrecondition, match=r"was shipped \(TRK-lost-reply\)"):
        await world.lifecycle.cancel(order_id, "too slow")
    assert (await world.order(order_id)).status is Status.SHIP_FAILED, "no refund for goods that left"
    world.remote.shipping_down = True
    with pytest.raises(Unavailable):
        await world.lifecycle.cancel(order_id, "too slow")
    never_shipped = await _ship_failed(world)
    world.remote.shipping_down = False
    assert (await world.lifecycle.cancel(never_shipped, "too slow")).status is Status.CANCELLED
    assert world.remote.shipment_asked == [order_id, order_id, never_shipped]


async def test_an_unknown_order_is_not_found(world: OrderWorld) -> None:
    with pytest.raises(NotFound):
        await world.lifecycle.cancel("o0-00000000000aaaaaaaaaaaa", "")
    with pytest.raises(NotFound):
        await world.lifecycle.review("not-an-order-id", True, "bob", "")


async def test_approval_settles_the_captured_payment(world: OrderWorld) -> None:
    order_id = await world.place(Status.AWAITING_REVIEW)
    world.remote.payments[order_id] = PaymentState("CAPTURED", "txn-1")
    approved = await world.lifecycle.review(order_id, True, "bob", "")
    assert approved.status is Status.PAID
    assert await world.history(order_id) == ["AWAITING_REVIEW", "PENDING", "PAID"]
    assert world.remote.payment_asked == [order_id]


async def test_an_approval_stands_when_payment_cannot_answer(world: OrderWorld) -> None:
    order_id = await world.place(Status.AWAITING_REVIEW)
    world.remote.payment_down = True
    approved = await world.lifecycle.review(order_id, True, "bob", "")
    assert approved.status is Status.PENDING, "reconcile settles it once payment answers"
    assert await world.history(order_id) == ["AWAITING_REVIEW", "PENDING"]


async def test_rejection_cancels_with_the_reviewer_and_note(world: OrderWorld) -> None:
    order_id = await world.place(Status.AWAITING_REVIEW)
    rejected = await world.lifecycle.review(order_id, False, "bob", "looks like fraud")
    assert rejected.status is Status.CANCELLED
    assert rejected.failure_reason == "rejected by bob: looks like fraud"
    assert world.remote.payment_asked == [], "the compensator refunds a cancelled order, not the review"


async def test_only_an_order_awaiting_review_can_be_reviewed(world: OrderWorld) -> None:
    order_id = await world.place(Status.PENDING)
    for approve in (True, False):
        with pytest.raises(FailedPrecondition, match="is PENDING, not AWAITING_REVIEW"):
            await world.lifecycle.review(order_id, approve, "bob", "")
    assert await world.history(order_id) == ["PENDING"]
