"""The order state machine: an explicit transition table, never "a larger number wins"."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    PENDING = "PENDING"
    AWAITING_REVIEW = "AWAITING_REVIEW"
    PAID = "PAID"
    SHIPPING = "SHIPPING"
    SHIPPED = "SHIPPED"
    SHIP_FAILED = "SHIP_FAILED"
    CANCELLED = "CANCELLED"


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.AWAITING_REVIEW: frozenset({Status.PENDING, Status.CANCELLED}),
    Status.PENDING: frozenset({Status.PAID, Status.CANCELLED}),
    # Fulfilment is claimed (SHIPPING) before ShipOrder is called: a cancel can
    # win only before the claim, and then nothing ships.
    Status.PAID: frozenset({Status.SHIPPING, Status.CANCELLED}),
    Status.SHIPPING: frozenset({Status.SHIPPED, Status.SHIP_FAILED}),
    Status.SHIP_FAILED: frozenset({Status.SHIPPING, Status.CANCELLED}),
    Status.SHIPPED: frozenset(),
    Status.CANCELLED: frozenset(),
}

INITIAL = frozenset({Status.PENDING, Status.AWAITING_REVIEW})
TERMINAL = frozenset({Status.SHIPPED, Status.CANCELLED})


def allowed(current: Status, target: Status) -> bool:
    return target in TRANSITIONS[current]
