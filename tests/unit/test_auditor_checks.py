"""The global auditor's invariants over hand-made snapshots: each violation is found and named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from auditor.audit import render
from auditor.checks import check
from auditor.snapshot import OrderRow, PaymentRow, Reservation, ShipmentRow, Snapshot
from catalog.audit import Audit, AuditRow

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
WINDOW = timedelta(minutes=31)
USD = ("USD", 54, 0)
STORED_ONCE = "orders: each stored once (and every acknowledged one)"
MONEY = "money: every capture belongs to a live order"


def order(order_id: str, status: str, *, age: float = 60, tracking: str = "", shard: int = 0) -> OrderRow:
    return OrderRow(order_id, shard, status, USD, tracking, NOW - timedelta(seconds=age), {"sku-1": 2})


def held(order_id: str, *, released: bool = False, lines: dict[str, int] | None = None) -> Reservation:
    return Reservation(order_id, lines or {"sku-1": 2}, released, "redis")


def healthy() -> Snapshot:
    """One order in each resting state, every record where it belongs."""
    return Snapshot(
        stock=Audit("e1", "e1", [AuditRow("sku-1", 100, 20, 0, 20, 0, 0)]),
        orders=[
            order("o-shipped", "SHIPPED", tracking="t-1"),
            order("o-cancelled", "CANCELLED"),
            order("o-review", "AWAITING_REVIEW"),
        ],
        reservations={
            "o-shipped": held("o-shipped"),
            "o-cancelled": held("o-cancelled", released=True),
            "o-review": held("o-review"),
        },
        payments=[
            PaymentRow("o-shipped", "tx-1", "CAPTURED", USD),
            PaymentRow("o-cancelled", "tx-2", "REFUNDED", USD),
            PaymentRow("o-review", "tx-3", "CAPTURED", USD),
        ],
        shipments=[ShipmentRow("o-shipped", "t-1")],
    )


def violations(snapshot: Snapshot, acknowledged: list[str] | None = None) -> dict[str, list[str]]:
    return {
        c.name: c.violations for c in check(snapshot, now=NOW, window=WINDOW, acknowledged=acknowledged) if c.violations
    }


def test_a_healthy_mesh_is_clean() -> None:
    checks = check(healthy(), now=NOW, window=WINDOW, acknowledged=["o-shipped", "o-review"])
    assert all(c.ok for c in checks), render(checks)
    assert render(checks).endswith("clean")


def test_an_acknowledged_order_that_was_never_stored_is_lost() -> None:
    found = violations(healthy(), acknowledged=["o-shipped", "o-lost"])
    assert found == {
        "orders: each stored once (and every acknowledged one)": ["o-lost was acknowledged and is not stored"]
    }


def test_an_order_on_two_shards_is_stored_twice() -> None:
    snapshot = healthy()
    snapshot.orders.append(order("o-review", "AWAITING_REVIEW", shard=1))
    found = violations(snapshot)
    assert found[STORED_ONCE] == ["o-review stored 2 times (shards [0, 1])"]


def test_money_kept_on_a_cancelled_order() -> None:
    snapshot = healthy()
    snapshot.payments[1] = PaymentRow("o-cancelled", "tx-2", "CAPTURED", USD)
    found = violations(snapshot)
    assert found == {
        "money: every capture belongs to a live order": ["o-cancelled: USD 54.00 captured and the order is CANCELLED"]
    }


def test_money_captured_without_an_order_or_with_another_amount() -> None:
    snapshot = healthy()
    snapshot.payments += [PaymentRow("demo-1", "tx-9", "CAPTURED", ("USD", 42, 0))]
    snapshot.payments[0] = PaymentRow("o-shipped", "tx-1", "CAPTURED", ("USD", 60, 500_000_000))
    found = violations(snapshot)[MONEY]
    assert found == [
        "o-shipped: USD 60.50 captured, the order totals USD 54.00",
        "demo-1: USD 42.00 captured and no order exists",
    ]


def test_a_paid_order_without_its_capture() -> None:
    snapshot = healthy()
    snapshot.payments[0] = PaymentRow("o-shipped", "tx-1", "REFUNDED", USD)
    found = violations(snapshot)
    assert found == {"money: every paid order was captured": ["o-shipped is SHIPPED; its payment is REFUNDED"]}


@pytest.mark.parametrize(
    ("status", "reservation", "expected"),
    [
        ("SHIPPED", None, "o-x is SHIPPED and holds no reservation"),
        ("PENDING", held("o-x", released=True), "o-x is PENDING and its reservation was released"),
        ("PAID", held("o-x", lines={"sku-1": 3}), "o-x ordered {'sku-1': 2} and reserved {'sku-1': 3}"),
        ("CANCELLED", held("o-x"), "o-x is CANCELLED and still holds {'sku-1': 2}"),
    ],
)
def test_orders_and_reservations_disagree(status: str, reservation: Reservation | None, expected: str) -> None:
    snapshot = Snapshot(stock=Audit("e1", "e1", []), orders=[order("o-x", status)])
    if reservation is not None:
        snapshot.reservations["o-x"] = reservation
    assert expected in violations(snapshot)["orders: live ones hold stock, cancelled ones gave it back"]


def test_stock_held_for_an_order_that_was_never_stored_is_found_and_counted() -> None:
    snapshot = healthy()
    snapshot.reservations["o-ghost"] = held("o-ghost")
    found = violations(snapshot)
    assert found["reservations: each became an order"] == [
        "o-ghost reserved {'sku-1': 2} (redis path) and no order is stored"
    ]
    assert found["stock: units reserved = units of live orders"] == ["sku-1: 6 units reserved, 4 in live orders"]


def test_nothing_ships_after_a_cancel_and_every_shipped_order_has_its_shipment() -> None:
    snapshot = healthy()
    snapshot.shipments.append(ShipmentRow("o-cancelled", "t-2"))
    snapshot.orders.append(order("o-lost-parcel", "SHIPPED", tracking="t-3"))
    snapshot.reservations["o-lost-parcel"] = held("o-lost-parcel")
    snapshot.payments.append(PaymentRow("o-lost-parcel", "tx-4", "CAPTURED", USD))
    assert violations(snapshot) == {
        "shipments: only for shipped orders, one each": [
            "o-cancelled shipped (t-2) and the order is CANCELLED",
            "o-lost-parcel is SHIPPED and shipping has no shipment",
        ]
    }


def test_a_paid_order_must_ship_unless_dead_lettered() -> None:
    snapshot = healthy()
    snapshot.orders.append(order("o-paid", "PAID"))
    snapshot.reservations["o-paid"] = held("o-paid")
    snapshot.payments.append(PaymentRow("o-paid", "tx-5", "CAPTURED", USD))
    assert violations(snapshot) == {
        "fulfilment: every paid order shipped or dead-lettered": ["o-paid is PAID: not shipped and not dead-lettered"]
    }
    snapshot.dead_lettered.add("o-paid")
    assert violations(snapshot) == {}


def test_an_order_waiting_past_its_window() -> None:
    snapshot = healthy()
    snapshot.orders[2] = order("o-review", "AWAITING_REVIEW", age=WINDOW.total_seconds() + 1)
    found = violations(snapshot)
    assert list(found) == ["timeouts: no order waits past its window"]


def test_the_catalog_books_and_duplicate_records_are_reported() -> None:
    snapshot = healthy()
    snapshot.stock = Audit("e1", "e2", [AuditRow("sku-1", 100, 20, 0, 15, 0, 0)], released_twice=["o-cancelled"])
    snapshot.payments.append(PaymentRow("o-extra", "tx-1", "DECLINED", USD))
    found = violations(snapshot)
    assert found["stock: SQL, Redis and journal agree"] == [
        "sku-1: MISMATCH (stock 100, allocated 20, stranded 0, Redis 15, unflushed 0, refilling 0)",
        "SQL is in epoch e1, Redis in e2",
        "o-cancelled released twice",
    ]
    assert found["payments and shipments: one per order"] == ["2 payments with transaction tx-1"]
