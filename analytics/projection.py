"""A batch of events -> what changes in the read model. Pure: the store reads
the current entries, calls :func:`project`, and writes the result in the same
transaction.

The rules, each chosen so the outcome does not depend on the order or the
number of times the events arrive:

- Each event is taken once: its id is recorded with its effect (a replay, or a
  redelivery after a crash before the acknowledgement, is skipped).
- An order's status is the one of its greatest :class:`~analytics.facts.Stamp`;
  the OrderPlaced's initial status stands only until a change is seen. A
  change for an order whose OrderPlaced has not arrived yet (the events travel
  on two streams) is kept on the order's entry and counts when it arrives, so
  it is never deferred or dropped. A change older than the one standing is
  recorded and has no effect.
- A backfilled order (analytics.facts.Backfilled, read from its order shard) is
  taken as its OrderPlaced followed by a change to its status now, stamped
  with the time the order context recorded that change: the order is placed
  once whatever came first, and the newest status wins, the backfilled one
  included. Nothing is recorded in ``applied``: taking it again finds the
  same stamp standing (or a newer one) and changes nothing.
- A placed order contributes to its creation hour under its current status
  (orders, total) and, unless CANCELLED, to its creation day's product sales
  (units, quantity x unit price). A status change moves the contribution:
  subtract it under the old status, add it under the new one. Cancelled orders
  are not sales: they gave their stock and their money back. CANCELLED is
  final, so a cancelled order leaves the sales once and never comes back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import TypeVar

from analytics.facts import Backfilled, Entry, Fact, Order, Placed, Status, StatusChanged

HourKey = tuple[datetime, Status, str]  # (creation hour, current status, currency)
DayKey = tuple[date, str, str]  # (creation day, product id, currency)
K = TypeVar("K")


@dataclass
class Projection:
    # Every entry the batch changed, as it stands after the batch.
    entries: dict[str, Entry] = field(default_factory=dict)
    # The orders placed by this batch (their lines are stored with them).
    placed: list[Order] = field(default_factory=list)
    # Deltas: (orders, nanos) per hour key, (units, nanos) per day key; zeros left out.
    hourly: dict[HourKey, tuple[int, int]] = field(default_factory=dict)
    sales: dict[DayKey, tuple[int, int]] = field(default_factory=dict)
    # (event id, order id) of every event taken, with or without an effect.
    applied: list[tuple[str, str]] = field(default_factory=list)


def project(facts: Iterable[Fact], seen: set[str], current: dict[str, Entry]) -> Projection:
    """The effect of ``facts`` (events and backfilled orders), in delivery order,
    on the entries in ``current`` (the read model's entries of their orders;
    absent: none yet). ``seen``: the ids among the events already taken."""
    state = dict(current)
    taken = set(seen)
    projection = Projection()
    hourly: dict[HourKey, list[int]] = {}
    sales: dict[DayKey, list[int]] = {}
    for fact in facts:
        before = state.get(fact.order_id)
        if isinstance(fact, Backfilled):
            after = _backfilled(before, fact)
        elif fact.event_id in taken:
            continue
        else:
            taken.add(fact.event_id)
            projection.applied.append((fact.event_id, fact.order_id))
            after = _placed(before, fact) if isinstance(fact, Placed) else _changed(before, fact)
        if after is before:
            continue
        if before is not None and before.order is not None:
            _contribute(hourly, sales, before.order, before.status, -1)
        elif after.order is not None:
            projection.placed.append(after.order)  # placed by this fact
        if after.order is not None:
            _contribute(hourly, sales, after.order, after.status, +1)
        state[fact.order_id] = projection.entries[fact.order_id] = after
    projection.hourly = _nonzero(hourly)
    projection.sales = _nonzero(sales)
    return projection


def _placed(before: Entry | None, event: Placed) -> Entry:
    if before is None:
        return Entry(event.order_id, event.initial, None, event.order)
    if before.order is not None:
        return before  # the order is placed once (a second OrderPlaced for it changes nothing)
    return replace(before, order=event.order)  # a change seen first stands


def _changed(before: Entry | None, change: StatusChanged | Backfilled) -> Entry:
    stamp = change.stamp
    if before is None:
        return Entry(change.order_id, change.status, stamp)
    if before.stamp is not None and stamp <= before.stamp:
        return before  # older than the status standing
    return replace(before, status=change.status, stamp=stamp)


def _backfilled(before: Entry | None, fact: Backfilled) -> Entry:
    if before is None:
        return Entry(fact.order_id, fact.status, fact.stamp, fact.order)
    if before.order is None:
        before = replace(before, order=fact.order)  # only a change was seen: this places the order
    return _changed(before, fact)


def _contribute(
    hourly: dict[HourKey, list[int]], sales: dict[DayKey, list[int]], order: Order, status: Status, sign: int
) -> None:
    """Add (sign +1) or take back (-1) what ``order`` counts for while in ``status``."""
    currency = order.total.currency
    _add(hourly, (order.hour, status, currency), sign, 1, order.total.nanos_total)
    if status is not Status.CANCELLED:
        for line in order.lines:
            _add(sales, (order.day, line.product_id, currency), sign, line.quantity, line.revenue.nanos_total)


def _add(deltas: dict[K, list[int]], key: K, sign: int, count: int, nanos: int) -> None:
    total = deltas.setdefault(key, [0, 0])
    total[0] += sign * count
    total[1] += sign * nanos


def _nonzero(deltas: dict[K, list[int]]) -> dict[K, tuple[int, int]]:
    # A move that leaves a key as it was (PAID -> SHIPPING keeps the day's sales) writes nothing.
    return {key: (count, nanos) for key, (count, nanos) in deltas.items() if count or nanos}
