"""The order context's business metrics (order/metrics.py): each committed
transition counted once, in a bounded class, whichever path made it; a
duplicate or replayed event never counted; the waiting-orders gauge."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import OperationalError

from common.order_ids import mint
from order.events import transition
from order.lifecycle import LifecycleConfig, MoneyAction
from order.metrics import WAITING, OrderMetrics, StatusCounts
from order.orders import Applied, CancelReason, Transition, cancel_reason_of_actor
from order.remote import PaymentState
from order.shards import Shards
from order.state import Status
from order.store import OrderStore
from ordermesh.events.v1 import events_pb2
from tests.unit.order_world import OrderWorld, order_world

CONFIG = LifecycleConfig(
    reconcile_after=timedelta(seconds=10),
    payment_window=timedelta(minutes=30),
    review_timeout=timedelta(minutes=30),
    ship_max_attempts=1,
    money_settle_after=timedelta(minutes=1),
)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> OrderMetrics:
    return OrderMetrics(registry)


@pytest.fixture
async def world(tmp_path: Path, metrics: OrderMetrics) -> AsyncIterator[OrderWorld]:
    async with order_world(tmp_path, CONFIG, metrics) as under_test:
        yield under_test


def counted(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def cancelled(registry: CollectorRegistry) -> dict[str, float | None]:
    return {r.value: counted(registry, "ordermesh_orders_cancelled_total", reason=r.value) for r in CancelReason}


def event(order_id: str, event_id: str, **payload: object) -> events_pb2.Envelope:
    return events_pb2.Envelope(event_id=event_id, order_id=order_id, **payload)  # type: ignore[arg-type]


async def test_every_series_exists_before_anything_happened(registry: CollectorRegistry, metrics: OrderMetrics) -> None:
    reasons = ["declined", "payment_timeout", "review_rejected", "review_expired", "ship_failed", "customer", "other"]
    assert cancelled(registry) == dict.fromkeys(reasons, 0.0)
    for action in ("compensate", "refund_cancelled", "refund_orphan", "sweep_stalled"):
        assert counted(registry, "ordermesh_money_actions_total", action=action) == 0
    for status in ("PENDING", "AWAITING_REVIEW", "SHIP_FAILED"):
        assert counted(registry, "ordermesh_orders_in_status", status=status) == 0
    for name in ("placed", "paid", "shipped"):
        assert counted(registry, f"ordermesh_orders_{name}_total") == 0


async def test_every_cancel_path_counts_once_in_its_class(world: OrderWorld, registry: CollectorRegistry) -> None:
    customer = await world.place()
    await world.lifecycle.cancel(customer, "payment not received in time")  # the customer's words: still customer
    rejected = await world.place(Status.AWAITING_REVIEW)
    await world.lifecycle.review(rejected, approve=False, reviewer="eve", note="declined by policy")
    declined = await world.place()
    world.remote.payments[declined] = PaymentState("DECLINED", decline_reason="card declined")
    unpaid = await world.place()
    unreviewed = await world.place(Status.AWAITING_REVIEW)
    not_shipped = await world.place()
    for status in (Status.PAID, Status.SHIPPING, Status.SHIP_FAILED):
        await world.move(not_shipped, status, status.lower())
    by_user, by_robot, by_event = await world.place(), await world.place(), await world.place()
    events = [
        event(by_user, "e-user", order_cancelled=events_pb2.OrderCancelled(reason="no longer needed", actor="user")),
        event(by_robot, "e-robot", order_cancelled=events_pb2.OrderCancelled(actor="robot")),
        event(by_event, "e-declined", payment_declined=events_pb2.PaymentDeclined(reason="card declined")),
    ]

    for _ in range(2):  # every event comes twice, every job runs twice: each change is counted once
        for envelope in events:
            await world.store.apply(transition(envelope), world.clock())
        await world.lifecycle.reconcile(world.clock.at(seconds=10))  # declined
        await world.lifecycle.reconcile(world.clock.at(minutes=31))  # unpaid: its window is over
        await world.lifecycle.expire(world.clock.at(minutes=32))
        await world.lifecycle.recover(world.clock.at(minutes=33))  # out of attempts, and no shipment

    for order_id in (customer, rejected, declined, unpaid, unreviewed, not_shipped, by_user, by_robot, by_event):
        assert (await world.order(order_id)).status is Status.CANCELLED
    assert cancelled(registry) == {
        "declined": 2,  # reconcile's and a PaymentDeclined event's
        "payment_timeout": 1,
        "review_rejected": 1,
        "review_expired": 1,
        "ship_failed": 1,
        "customer": 2,  # CancelOrder, and an OrderCancelled by the user
        "other": 1,
    }


async def test_a_duplicate_or_replayed_event_is_not_counted_twice(
    world: OrderWorld, registry: CollectorRegistry
) -> None:
    order_id = await world.place()
    placed = await world.order(order_id)
    # OrderPlaced again: alone, and in a batch with a new order (the row-by-row path).
    assert await world.store.insert([placed], world.clock()) == {}
    assert await world.store.insert([placed, replace(placed, order_id=mint("ada", 1))], world.clock()) == {}
    assert counted(registry, "ordermesh_orders_placed_total") == 2

    captured = transition(event(order_id, f"{order_id}:payment", payment_captured=events_pb2.PaymentCaptured()))
    assert [(await world.store.apply(captured, world.clock()))[0] for _ in range(2)] == [
        Applied.APPLIED,
        Applied.DUPLICATE,
    ]
    # A redelivered batch holding it twice; the same change under another event id (illegal from PAID).
    assert [r for r, _ in await world.store.apply_many([captured, captured], world.clock())] == [Applied.DUPLICATE] * 2
    again = Transition(order_id, f"{order_id}:payment-reconciled", Status.PAID, "payment captured")
    assert (await world.store.apply(again, world.clock()))[0] is Applied.ILLEGAL
    assert counted(registry, "ordermesh_orders_paid_total") == 1

    for _ in range(2):  # the dispatcher given the PAID change twice: shipped once
        assert await world.lifecycle.ship_many([order_id]) == {}
    assert (await world.order(order_id)).status is Status.SHIPPED
    assert counted(registry, "ordermesh_orders_shipped_total") == 1


async def test_a_transaction_run_again_counts_only_what_it_committed(
    world: OrderWorld, registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deadlock after the changes were decided and written: the store rolls
    back and runs the transaction again. Only the commit is counted."""
    order_id = await world.place()
    real = OrderStore._apply_in
    attempts: list[int] = []

    async def deadlocked_once(self: OrderStore, connection: Any, transitions: Any, now: Any) -> Any:
        decisions = await real(self, connection, transitions, now)
        attempts.append(len(decisions.changes))
        if len(attempts) == 1:
            raise OperationalError("UPDATE orders", {}, Exception("1213 Deadlock found"))
        return decisions

    monkeypatch.setattr(OrderStore, "_apply_in", deadlocked_once)
    await world.move(order_id, Status.PAID, "payment")
    assert attempts == [1, 1], "the change was decided twice, committed once"
    assert counted(registry, "ordermesh_orders_paid_total") == 1


async def test_money_actions_are_counted_by_what_the_sweep_did(world: OrderWorld, registry: CollectorRegistry) -> None:
    kept, clean = await world.place(), await world.place()
    for order_id in (kept, clean):
        await world.lifecycle.cancel(order_id, "")
    world.remote.payments[kept] = PaymentState("CAPTURED", "txn-1")  # the compensator missed it
    world.remote.payment_down = True
    await world.lifecycle.settle_money(world.clock.at(minutes=2))
    world.remote.payment_down = False
    for _ in range(2):
        await world.lifecycle.settle_money(world.clock.at(minutes=2))
    assert world.remote.refunds == [kept]
    actions = {a.value: counted(registry, "ordermesh_money_actions_total", action=a.value) for a in MoneyAction}
    assert actions == {"compensate": 0, "refund_cancelled": 1, "refund_orphan": 0, "sweep_stalled": 1}


async def test_the_waiting_gauge_adds_every_shard(
    world: OrderWorld, registry: CollectorRegistry, metrics: OrderMetrics
) -> None:
    for status in (Status.PENDING, Status.PENDING, Status.AWAITING_REVIEW, Status.PENDING):
        await world.place(status)
    failed = await world.place()
    for status in (Status.PAID, Status.SHIPPING, Status.SHIP_FAILED):
        await world.move(failed, status, status.lower())
    # The one database twice, as two shards: each is counted, and the counts are added.
    counts = StatusCounts(Shards([world.store, world.store]), metrics, interval=60)
    assert await counts.count_once() == {Status.PENDING: 6, Status.AWAITING_REVIEW: 2, Status.SHIP_FAILED: 2}
    assert {s.value: counted(registry, "ordermesh_orders_in_status", status=s.value) for s in WAITING} == {
        "PENDING": 6,
        "AWAITING_REVIEW": 2,
        "SHIP_FAILED": 2,
    }


@pytest.mark.parametrize(
    ("actor", "reason"),
    [
        ("user", CancelReason.CUSTOMER),
        (" Customer ", CancelReason.CUSTOMER),
        ("reviewer", CancelReason.REVIEW_REJECTED),
        ("reconcile", CancelReason.PAYMENT_TIMEOUT),
        ("payment", CancelReason.DECLINED),
        ("expiry", CancelReason.OTHER),  # the payment window's or the review's: not guessed
        ("", CancelReason.OTHER),
        ("order 123 by ada", CancelReason.OTHER),  # free text never becomes a label
    ],
)
def test_an_order_cancelled_actor_maps_to_a_bounded_class(actor: str, reason: CancelReason) -> None:
    assert cancel_reason_of_actor(actor) is reason
