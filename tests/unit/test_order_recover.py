"""Recover (order/lifecycle.py): failed shipping is retried with backoff, and shipping is asked
whether a shipment exists before the order is given up and cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from order.lifecycle import LifecycleConfig
from order.orders import Order
from order.state import Status
from tests.unit.order_world import OrderWorld, order_world

CONFIG = LifecycleConfig(
    ship_max_attempts=2,
    ship_backoff=timedelta(seconds=5),
    ship_backoff_max=timedelta(minutes=5),
    ship_claim_timeout=timedelta(minutes=2),
)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[OrderWorld]:
    async with order_world(tmp_path, CONFIG) as under_test:
        yield under_test


async def recover_at(world: OrderWorld, seconds: float) -> int:
    return await world.lifecycle.recover(world.clock.at(seconds=seconds))


async def failed_twice(world: OrderWorld) -> str:
    """A PAID order whose shipping failed ship_max_attempts times (the last at 5 s)."""
    order_id = await world.place()
    await world.move(order_id, Status.PAID, "payment")
    world.remote.shipping_down = True
    assert await world.lifecycle.ship_many([order_id]) == {}
    assert (await world.order(order_id)).ship_attempts == 1
    assert await recover_at(world, 4) == 0, "the first retry waits ship_backoff"
    assert world.remote.ship_calls == [order_id]
    assert await recover_at(world, 5) == 0
    order = await world.order(order_id)
    assert (order.status, order.ship_attempts) == (Status.SHIP_FAILED, 2)
    assert world.remote.ship_calls == [order_id, order_id] and world.remote.shipment_asked == []
    return order_id


async def test_after_the_last_attempt_shipping_is_asked_before_giving_up(world: OrderWorld) -> None:
    order_id = await failed_twice(world)
    world.remote.shipping_down = False
    assert await recover_at(world, 60) == 1
    assert world.remote.shipment_asked == [order_id]
    assert world.remote.ship_calls == [order_id] * 2, "no third ShipOrder for an order given up"
    order = await world.order(order_id)
    assert (order.status, order.failure_reason) == (Status.CANCELLED, "shipping failed 2 times")


async def test_a_shipment_whose_reply_was_lost_is_finished_not_cancelled(world: OrderWorld) -> None:
    order_id = await failed_twice(world)
    world.remote.shipping_down = False
    world.remote.shipments[order_id] = "TRK-lost-reply"  # the carrier shipped; its answer never came back
    assert await recover_at(world, 60) == 1
    assert world.remote.shipment_asked == [order_id]
    order = await world.order(order_id)
    assert (order.status, order.tracking_id) == (Status.SHIPPED, "TRK-lost-reply")
    assert "CANCELLED" not in await world.history(order_id)


async def test_when_shipping_cannot_say_the_order_waits(world: OrderWorld) -> None:
    order_id = await failed_twice(world)
    assert await recover_at(world, 60) == 0  # still down: GetShipment is UNAVAILABLE
    assert world.remote.shipment_asked == [order_id] and world.skipped == ["recover-shipping"]
    assert (await world.order(order_id)).status is Status.SHIP_FAILED, "never cancelled on a guess"


async def test_a_stale_shipping_claim_is_shipped_again_and_a_fresh_one_left_alone(world: OrderWorld) -> None:
    order_id = await world.place()
    await world.move(order_id, Status.PAID, "payment")
    await world.move(order_id, Status.SHIPPING, "shipping-0")  # the replica that claimed it died
    assert await recover_at(world, 119) == 0 and world.remote.ship_calls == []
    assert await recover_at(world, 120) == 1
    assert (await world.order(order_id)).status is Status.SHIPPED


async def test_a_backlog_is_shipped_again_concurrently_a_batch_per_run(world: OrderWorld) -> None:
    """What a shipping outage under load leaves: many SHIP_FAILED orders due at
    once. A run claims a batch together and ships it concurrently (the soak
    found one-at-a-time recovery falling ever further behind the load)."""
    order_ids = [await world.place() for _ in range(30)]
    for order_id in order_ids:
        await world.move(order_id, Status.PAID, "payment")
    world.remote.shipping_down = True
    await world.lifecycle.ship_many(order_ids)
    world.remote.shipping_down = False
    in_flight = peak = 0
    ship = world.remote.ship

    async def slow_ship(order: Order) -> str:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return await ship(order)

    world.remote.ship = slow_ship  # type: ignore[method-assign]
    assert await recover_at(world, 5) == 30
    assert peak > 1, "shipped one at a time"
    assert {(await world.order(i)).status for i in order_ids} == {Status.SHIPPED}
