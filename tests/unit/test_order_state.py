"""The transition table, exactly as docs/architecture.md states it."""

from __future__ import annotations

import itertools

from order.state import INITIAL, TERMINAL, Status, allowed

LEGAL = {
    (Status.AWAITING_REVIEW, Status.PENDING),
    (Status.AWAITING_REVIEW, Status.CANCELLED),
    (Status.PENDING, Status.PAID),
    (Status.PENDING, Status.CANCELLED),
    (Status.PAID, Status.SHIPPING),
    (Status.PAID, Status.CANCELLED),
    (Status.SHIPPING, Status.SHIPPED),
    (Status.SHIPPING, Status.SHIP_FAILED),
    (Status.SHIP_FAILED, Status.SHIPPING),
    (Status.SHIP_FAILED, Status.CANCELLED),
}


def test_every_pair_is_legal_exactly_when_the_table_says_so() -> None:
    for current, target in itertools.product(Status, Status):
        assert allowed(current, target) == ((current, target) in LEGAL), (current, target)


def test_cancelled_never_overwrites_shipped_and_paid_never_goes_back() -> None:
    assert not allowed(Status.SHIPPED, Status.CANCELLED)
    assert not allowed(Status.PAID, Status.PENDING)
    assert not allowed(Status.CANCELLED, Status.PAID)
    assert {Status.PENDING, Status.AWAITING_REVIEW} == INITIAL
    assert {Status.SHIPPED, Status.CANCELLED} == TERMINAL
