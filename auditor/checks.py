"""The invariants of the design, checked over one snapshot: a pure function.

Each check reports how many things it looked at and every violation it found,
in words a person can act on. Status names are the order context's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from auditor.snapshot import Amount, OrderRow, Snapshot

# An order in these holds its stock: the goods are sold to it (or left with it).
HOLDS_STOCK = frozenset({"PENDING", "AWAITING_REVIEW", "PAID", "SHIPPING", "SHIPPED", "SHIP_FAILED"})
# A captured payment may belong only to an order in these (the charge is made
# before review; SHIP_FAILED is retried, then shipped or cancelled and refunded).
KEEPS_MONEY = frozenset({"AWAITING_REVIEW", "PAID", "SHIPPING", "SHIPPED", "SHIP_FAILED"})
# An order in these has been paid for.
PAID_FOR = frozenset({"PAID", "SHIPPING", "SHIPPED", "SHIP_FAILED"})
# Paid and not shipped yet: on a quiet mesh, only if its fulfilment was dead-lettered.
NOT_SHIPPED = frozenset({"PAID", "SHIPPING", "SHIP_FAILED"})
# Waiting for a payment or a person: each for at most the order timeout.
WAITING = frozenset({"PENDING", "AWAITING_REVIEW"})


@dataclass
class Check:
    name: str
    checked: int
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def check(
    snapshot: Snapshot, *, now: datetime, window: timedelta, acknowledged: Iterable[str] | None = None
) -> list[Check]:
    orders = _by_id(snapshot.orders)
    return [
        _stock_ledger(snapshot),
        _stock_matches_orders(snapshot, orders),
        _stored_once(snapshot, acknowledged),
        _orders_hold_stock(snapshot, orders),
        _reservations_have_orders(snapshot, orders),
        _one_each(snapshot),
        _money_belongs(snapshot, orders),
        _paid_orders_paid(snapshot, orders),
        _shipments_belong(snapshot, orders),
        _paid_orders_ship(snapshot, orders),
        _nothing_waits(snapshot, now - window),
    ]


def _by_id(rows: list[OrderRow]) -> dict[str, OrderRow]:
    return {row.order_id: row for row in rows}


def _stock_ledger(snapshot: Snapshot) -> Check:
    """The catalog's own audit: allocation, Redis counters, journal and epochs."""
    stock = snapshot.stock
    result = Check("stock: SQL, Redis and journal agree", len(stock.rows))
    for row in stock.rows:
        if row.verdict != "ok":
            result.violations.append(
                f"{row.product_id}: {row.verdict} (stock {row.stock}, allocated {row.allocated}, stranded "
                f"{row.stranded}, Redis {row.counter}, unflushed {row.unflushed}, refilling {row.in_flight})"
            )
    if not stock.epoch_ok:
        result.violations.append(f"SQL is in epoch {stock.sql_epoch}, Redis in {stock.redis_epoch}")
    result.violations += [f"{order_id} reserved on Redis and on SQL" for order_id in stock.reserved_twice]
    result.violations += [f"{order_id} released twice" for order_id in stock.released_twice]
    return result


def _stock_matches_orders(snapshot: Snapshot, orders: dict[str, OrderRow]) -> Check:
    """Conservation: what the catalog holds for orders is what the orders hold."""
    reserved: Counter[str] = Counter()
    for r in snapshot.reservations.values():
        if not r.released:
            reserved.update(r.lines)
    ordered: Counter[str] = Counter()
    for o in orders.values():
        if o.status in HOLDS_STOCK:
            ordered.update(o.lines)
    products = sorted(set(reserved) | set(ordered))
    result = Check("stock: units reserved = units of live orders", len(products))
    for pid in products:
        if reserved[pid] != ordered[pid]:
            result.violations.append(f"{pid}: {reserved[pid]} units reserved, {ordered[pid]} in live orders")
    return result


def _stored_once(snapshot: Snapshot, acknowledged: Iterable[str] | None) -> Check:
    stored = Counter(row.order_id for row in snapshot.orders)
    wanted = list(acknowledged) if acknowledged is not None else []
    result = Check("orders: each stored once (and every acknowledged one)", len(stored) + len(wanted))
    for order_id, count in stored.items():
        if count > 1:
            shards = sorted(row.shard for row in snapshot.orders if row.order_id == order_id)
            result.violations.append(f"{order_id} stored {count} times (shards {shards})")
    result.violations += [
        f"{order_id} was acknowledged and is not stored" for order_id in wanted if not stored[order_id]
    ]
    return result


def _orders_hold_stock(snapshot: Snapshot, orders: dict[str, OrderRow]) -> Check:
    result = Check("orders: live ones hold stock, cancelled ones gave it back", len(orders))
    for o in orders.values():
        r = snapshot.reservations.get(o.order_id)
        if o.status in HOLDS_STOCK:
            if r is None:
                result.violations.append(f"{o.order_id} is {o.status} and holds no reservation")
            elif r.released:
                result.violations.append(f"{o.order_id} is {o.status} and its reservation was released")
            elif r.lines != o.lines:
                result.violations.append(f"{o.order_id} ordered {o.lines} and reserved {r.lines}")
        elif o.status == "CANCELLED" and r is not None and not r.released:
            result.violations.append(f"{o.order_id} is CANCELLED and still holds {r.lines}")
    return result


def _reservations_have_orders(snapshot: Snapshot, orders: dict[str, OrderRow]) -> Check:
    """A reservation writes its OrderPlaced in the same step: on a quiet mesh
    one without an order is an order lost on the way."""
    result = Check("reservations: each became an order", len(snapshot.reservations))
    for r in snapshot.reservations.values():
        if not r.released and r.order_id not in orders:
            result.violations.append(f"{r.order_id} reserved {r.lines} ({r.path} path) and no order is stored")
    return result


def _one_each(snapshot: Snapshot) -> Check:
    result = Check("payments and shipments: one per order", len(snapshot.payments) + len(snapshot.shipments))
    for what, keys in (
        ("payments for order", [p.order_id for p in snapshot.payments]),
        ("payments with transaction", [p.transaction_id for p in snapshot.payments]),
        ("shipments for order", [s.order_id for s in snapshot.shipments]),
        ("shipments with tracking id", [s.tracking_id for s in snapshot.shipments]),
    ):
        result.violations += [f"{count} {what} {key}" for key, count in Counter(keys).items() if count > 1]
    return result


def _money_belongs(snapshot: Snapshot, orders: dict[str, OrderRow]) -> Check:
    result = Check("money: every capture belongs to a live order", len(snapshot.payments))
    for p in snapshot.payments:
        if p.status != "CAPTURED":
            continue
        o = orders.get(p.order_id)
        if o is None:
            result.violations.append(f"{p.order_id}: {_money(p.amount)} captured and no order exists")
        elif o.status not in KEEPS_MONEY:
            result.violations.append(f"{p.order_id}: {_money(p.amount)} captured and the order is {o.status}")
        elif p.amount != o.amount:
            result.violations.append(f"{p.order_id}: {_money(p.amount)} captured, the order totals {_money(o.amount)}")
    return result


def _paid_orders_paid(snapshot: Snapshot, orders: dict[str, OrderRow]) -> Check:
    payments = {p.order_id: p for p in snapshot.payments}
    paid = [o for o in orders.values() if o.status in PAID_FOR]
    result = Check("money: every paid order was captured", len(paid))
    for o in paid:
        p = payments.get(o.order_id)
        if p is None or p.status != "CAPTURED":
            result.violations.append(f"{o.order_id} is {o.status}; its payment is {p.status if p else 'missing'}")
    return result


def _shipments_belong(snapshot: Snapshot, orders: dict[str, OrderRow]) -> Check:
    shipments = {s.order_id: s for s in snapshot.shipments}
    result = Check("shipments: only for shipped orders, one each", len(shipments))
    for s in shipments.values():
        o = orders.get(s.order_id)
        if o is None:
            result.violations.append(f"{s.order_id} shipped ({s.tracking_id}) and no order exists")
        elif o.status not in ("SHIPPED", "SHIPPING"):
            result.violations.append(f"{s.order_id} shipped ({s.tracking_id}) and the order is {o.status}")
        elif o.status == "SHIPPED" and o.tracking_id != s.tracking_id:
            result.violations.append(f"{s.order_id} shipped as {s.tracking_id}, the order says {o.tracking_id}")
    for o in orders.values():
        if o.status == "SHIPPED" and o.order_id not in shipments:
            result.violations.append(f"{o.order_id} is SHIPPED and shipping has no shipment")
    return result


def _paid_orders_ship(snapshot: Snapshot, orders: dict[str, OrderRow]) -> Check:
    waiting = [o for o in orders.values() if o.status in NOT_SHIPPED]
    result = Check("fulfilment: every paid order shipped or dead-lettered", len(waiting))
    for o in waiting:
        if o.order_id not in snapshot.dead_lettered:
            result.violations.append(f"{o.order_id} is {o.status}: not shipped and not dead-lettered")
    return result


def _nothing_waits(snapshot: Snapshot, oldest: datetime) -> Check:
    waiting = [o for o in snapshot.orders if o.status in WAITING]
    result = Check("timeouts: no order waits past its window", len(waiting))
    for o in waiting:
        if o.created_at < oldest:
            result.violations.append(f"{o.order_id} is {o.status} since {o.created_at:%Y-%m-%d %H:%M:%S}")
    return result


def _money(amount: Amount) -> str:
    currency, units, nanos = amount
    return f"{currency} {units + nanos / 1e9:.2f}"
