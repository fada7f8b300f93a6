"""Reconcile (order/lifecycle.py): PENDING orders ask payment with a capped exponential backoff, then expire."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from order.lifecycle import LifecycleConfig
from order.remote import PaymentState
from order.state import Status
from tests.unit.order_world import OrderWorld, order_world

CONFIG = LifecycleConfig(
    reconcile_after=timedelta(seconds=10),
    reconcile_backoff_max=timedelta(minutes=2),
    payment_window=timedelta(minutes=30),
)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[OrderWorld]:
    async with order_world(tmp_path, CONFIG) as under_test:
        yield under_test


async def reconcile_at(world: OrderWorld, seconds: float) -> int:
    return await world.lifecycle.reconcile(world.clock.at(seconds=seconds))


async def test_payment_is_asked_again_after_a_doubling_wait(world: OrderWorld) -> None:
    order_id = await world.place()
    asked = world.remote.payment_asked
    # (seconds since placing, asked by then): not before reconcile_after, then 10 s, 20 s, 40 s apart.
    for seconds, expected in [(9, 0), (10, 1), (19, 1), (20, 2), (39, 2), (40, 3), (79, 3), (80, 4)]:
        await reconcile_at(world, seconds)
        assert len(asked) == expected, f"at {seconds} s"
    world.remote.payments[order_id] = PaymentState("CAPTURED", "txn-1")
    assert await reconcile_at(world, 160) == 1
    assert await world.history(order_id) == ["PENDING", "PAID"]
    assert await reconcile_at(world, 400) == 0 and len(asked) == 5, "a PAID order is not asked again"


async def test_an_unpaid_order_is_asked_about_twenty_times_then_expires_on_time(world: OrderWorld) -> None:
    order_id = await world.place()
    asked_at: list[int] = []
    for seconds in range(0, 31 * 60, 10):
        before = len(world.remote.payment_asked)
        await reconcile_at(world, seconds)
        if len(world.remote.payment_asked) > before:
            asked_at.append(seconds)
    # 10, 20, 40, 80, 160, then every 120 s (the cap), and once more when its window ends.
    assert asked_at == [10, 20, 40, 80, 160, *range(280, 1800, 120), 1800]
    order = await world.order(order_id)
    assert (order.status, order.failure_reason) == (Status.CANCELLED, "payment not received in time")
    assert order.updated_at == world.clock.at(seconds=1800), "cancelled at the end of the window, not later"


async def test_a_declined_payment_cancels_with_its_reason(world: OrderWorld) -> None:
    order_id = await world.place()
    world.remote.payments[order_id] = PaymentState("DECLINED", "txn-1", "insufficient funds")
    assert await reconcile_at(world, 10) == 1
    order = await world.order(order_id)
    assert (order.status, order.failure_reason) == (Status.CANCELLED, "insufficient funds")


async def test_a_payment_outage_skips_the_order_and_asks_again_next_round(world: OrderWorld) -> None:
    order_id = await world.place()
    world.remote.payment_down = True
    assert await reconcile_at(world, 10) == 0
    assert world.skipped == ["reconcile"]
    world.remote.payment_down = False
    world.remote.payments[order_id] = PaymentState("CAPTURED", "txn-1")
    assert await reconcile_at(world, 11) == 1, "an outage is not a check: no backoff was recorded"
    assert (await world.order(order_id)).status is Status.PAID
