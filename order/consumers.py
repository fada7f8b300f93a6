"""Handlers of the order context's event streams.

OrderPlaced -> rows: batched per shard (one multi-row INSERT, row-by-row
fallback; a duplicate order id is success). Status events -> the state
machine: each applied exactly once; one for an order not inserted yet is
deferred (retried, never dropped); an illegal one is recorded and ignored.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from mesh.bus import BatchOutcome, Message
from mesh.clock import Clock
from order.events import parse, placed_order, transition
from order.orders import Applied, MalformedEvent, Order
from order.shards import Shards
from order.store import OrderStore

log = logging.getLogger(__name__)


class PlacedOrders:
    def __init__(self, shards: Shards, clock: Clock) -> None:
        self._shards = shards
        self._clock = clock

    async def __call__(self, batch: list[Message]) -> BatchOutcome:
        outcome = BatchOutcome()
        by_shard: dict[int, list[Order]] = defaultdict(list)
        stores: dict[int, OrderStore] = {}
        for message in batch:
            try:
                order = placed_order(parse(message.payload))
            except MalformedEvent as error:
                outcome.fail(message, str(error))
                continue
            store = self._shards.for_order(order.order_id, order.user_id)
            if store is None:
                outcome.fail(message, f"no shard for order {order.order_id}")
                continue
            stores[id(store)] = store
            by_shard[id(store)].append(order)
        for key, orders in by_shard.items():
            # A failure here (SQL down) raises: the whole batch is retried later.
            await stores[key].insert(orders, self._clock())
        return outcome


class StatusEvents:
    def __init__(self, shards: Shards, clock: Clock) -> None:
        self._shards = shards
        self._clock = clock

    async def __call__(self, batch: list[Message]) -> BatchOutcome:
        outcome = BatchOutcome()
        for message in batch:
            try:
                change = transition(parse(message.payload))
            except MalformedEvent as error:
                outcome.fail(message, str(error))
                continue
            store = self._shards.for_order(change.order_id)
            if store is None:
                outcome.fail(message, f"no shard for order {change.order_id}")
                continue
            result, before = await store.apply(change, self._clock())
            if result is Applied.MISSING:
                outcome.defer(message, f"order {change.order_id} not inserted yet")
            elif result is Applied.ILLEGAL:
                log.warning("ignored %s for %s: illegal from %s", change.target, change.order_id, before)
        return outcome
