"""Handlers of the order context's event streams.

OrderPlaced -> rows: batched per shard (one multi-row INSERT, row-by-row
fallback; a duplicate order id is success). Status events -> the state
machine: each applied exactly once; one for an order not inserted yet is
deferred (retried, never dropped); an illegal one is recorded and ignored.
A batch of status events is applied per shard in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mesh.bus import BatchOutcome, Message
from mesh.bus.tracing import message_span
from mesh.clock import Clock
from mesh.errors import DomainError, Unavailable
from order.events import parse, placed_order, transition
from order.lifecycle import Lifecycle, MoneyAction
from order.orders import Applied, MalformedEvent, Order, Transition
from order.ports import Gateway
from order.shards import Shards
from order.state import Status
from ordermesh.common.v1 import common_pb2

log = logging.getLogger(__name__)


class PlacedOrders:
    def __init__(self, shards: Shards, clock: Clock) -> None:
        self._shards = shards
        self._clock = clock

    async def __call__(self, batch: list[Message]) -> BatchOutcome:
        outcome = BatchOutcome()
        parsed: list[tuple[Message, Order]] = []
        for message in batch:
            try:
                parsed.append((message, placed_order(parse(message.payload))))
            except MalformedEvent as error:
                outcome.fail(message, str(error))
        groups, unrouted = self._shards.group(parsed, lambda pair: (pair[1].order_id, pair[1].user_id))
        for message, order in unrouted:
            outcome.fail(message, f"no shard for order {order.order_id}")
        for store, pairs in groups.items():
            # A failure here (SQL down) raises: the whole batch is retried later.
            refused = await store.insert([order for _, order in pairs], self._clock())
            for message, order in pairs:
                if (reason := refused.get(order.order_id)) is not None:
                    outcome.fail(message, reason)  # this one only: dead-lettered with its reason in the end
        return outcome


class StatusEvents:
    def __init__(self, shards: Shards, clock: Clock) -> None:
        self._shards = shards
        self._clock = clock

    async def __call__(self, batch: list[Message]) -> BatchOutcome:
        outcome = BatchOutcome()
        parsed: list[tuple[Message, Transition]] = []
        for message in batch:
            try:
                parsed.append((message, transition(parse(message.payload))))
            except MalformedEvent as error:
                outcome.fail(message, str(error))
        # Per shard, in delivery order: one transaction per shard for the whole batch.
        groups, unrouted = self._shards.group(parsed, lambda pair: (pair[1].order_id, ""))
        for message, change in unrouted:
            outcome.fail(message, f"no shard for order {change.order_id}")
        for store, changes in groups.items():
            results = await store.apply_many([c for _, c in changes], self._clock())
            for (message, change), (result, before) in zip(changes, results, strict=True):
                if result is Applied.MISSING:
                    outcome.defer(message, f"order {change.order_id} not inserted yet")
                elif result is Applied.ILLEGAL:
                    log.warning("ignored %s for %s: illegal from %s", change.target, change.order_id, before)
        return outcome


def _changed_to(message: Message, status: Status) -> bool:
    envelope = parse(message.payload)
    if envelope.WhichOneof("payload") != "order_status_changed":
        return False
    return envelope.order_status_changed.to_status == common_pb2.OrderStatus.Value(status.value)


class Dispatcher:
    """PAID -> ShipOrder -> SHIPPED (or SHIP_FAILED), with bounded concurrency.

    One consumer group: each change goes to one replica; and ShipOrder is
    idempotent per order, so even a redelivery ships once."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self._lifecycle = lifecycle

    async def __call__(self, batch: list[Message]) -> BatchOutcome:
        outcome = BatchOutcome()
        paid = []
        for message in batch:
            try:
                if _changed_to(message, Status.PAID):
                    paid.append(message)
            except MalformedEvent as error:
                outcome.fail(message, str(error))
        failures = await self._lifecycle.ship_many([m.order_id for m in paid])
        for message in paid:
            if (failure := failures.get(message.order_id)) is not None:
                outcome.fail(message, f"ship: {failure}")
        return outcome


class Compensator:
    """Every CANCELLED order: refund what was captured and give the stock back.

    Both calls are idempotent, so repeats are harmless. Payment or catalog down
    (or behind an open breaker) defers the message: it waits, for as long as it
    takes, without spending attempts (a compensation must never be given up
    for an outage). Any other failure is retried by the bus and, in the end,
    dead-lettered for a person."""

    def __init__(self, remote: Gateway, on_money: Callable[[MoneyAction], None] | None = None) -> None:
        self._remote = remote
        self._on_money = on_money

    async def __call__(self, batch: list[Message]) -> BatchOutcome:
        outcome = BatchOutcome()
        for message in batch:
            try:
                if not _changed_to(message, Status.CANCELLED):
                    continue
                with message_span(message, "compensate"):  # this order's RPCs, under a span of its own
                    await self._remote.refund(message.order_id, "order cancelled")
                    await self._remote.release(message.order_id)
                if self._on_money is not None:
                    self._on_money(MoneyAction.COMPENSATE)
            except MalformedEvent as error:
                outcome.fail(message, str(error))
            except Unavailable as error:
                outcome.defer(message, f"compensation waits: {error}", until_it_can=True)
            except DomainError as error:
                outcome.fail(message, f"compensation: {error}")
        return outcome
