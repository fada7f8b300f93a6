"""The order state decisions over the whole transition table, without a database."""

from __future__ import annotations

import itertools

import pytest

from order.decisions import Current, StatusChange, decide
from order.orders import Applied, Transition
from order.state import TRANSITIONS, Status

PAIRS = list(itertools.product(Status, Status))


@pytest.mark.parametrize(("before", "target"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_every_pair_of_the_table(before: Status, target: Status) -> None:
    decisions = decide([Transition("o1", "e1", target, "why")], [], {"o1": Current(before)})
    legal = target in TRANSITIONS[before]
    if legal:
        assert decisions.results == [(Applied.APPLIED, before)]
        assert decisions.rows["o1"]["status"] == target.value
        assert decisions.changes == [StatusChange("o1", before, target, "why", "")]
        assert decisions.judged == [("e1", "o1", "applied", f"{before} -> {target}")]
    else:
        assert decisions.results == [(Applied.ILLEGAL, before)]
        assert decisions.rows == {} and decisions.changes == []
        assert decisions.judged == [("e1", "o1", "illegal", f"{before} -> {target}")], "recorded once, not applied"


@pytest.mark.parametrize("before", list(Status))
def test_a_guarded_transition_applies_only_from_the_status_it_names(before: Status) -> None:
    # A PaymentDeclined may cancel a PENDING order, never a PAID one, although PAID -> CANCELLED is legal.
    declined = Transition("o1", "e1", Status.CANCELLED, "declined", only_from=frozenset({Status.PENDING}))
    decisions = decide([declined], [], {"o1": Current(before)})
    expected = Applied.APPLIED if before is Status.PENDING else Applied.ILLEGAL
    assert decisions.results == [(expected, before)]


def test_duplicates_and_missing_orders_change_nothing() -> None:
    paid = Transition("o1", "e-paid", Status.PAID, "captured")
    ghost = Transition("o-later", "e-ghost", Status.PAID, "captured")
    decisions = decide([paid, paid, ghost], ["e-old"], {"o1": Current(Status.PENDING)})
    assert decisions.results == [(Applied.APPLIED, Status.PENDING), (Applied.DUPLICATE, None), (Applied.MISSING, None)]
    assert [j[0] for j in decisions.judged] == ["e-paid"], "a missing order's event is not judged: it is deferred"
    again = decide([paid], ["e-paid"], {"o1": Current(Status.PAID)})
    assert again.results == [(Applied.DUPLICATE, None)] and again.rows == {}


def test_a_batch_sees_its_own_earlier_transitions() -> None:
    batch = [
        Transition("o1", "e1", Status.PAID, "captured"),
        Transition("o1", "e2", Status.SHIPPING, "claimed"),
        Transition("o1", "e3", Status.SHIP_FAILED, "carrier down", failure_reason="carrier down"),
        Transition("o1", "e4", Status.SHIP_FAILED, "carrier down again"),  # SHIP_FAILED -> SHIP_FAILED: illegal
        Transition("o1", "e5", Status.SHIPPING, "claimed again"),
        Transition("o1", "e6", Status.SHIPPED, "shipped", tracking_id="TRK-1"),
        Transition("o1", "e7", Status.CANCELLED, "too late"),  # SHIPPED is terminal
    ]
    decisions = decide(batch, [], {"o1": Current(Status.PENDING, ship_attempts=2)})
    assert [r[0] for r in decisions.results] == [
        Applied.APPLIED,
        Applied.APPLIED,
        Applied.APPLIED,
        Applied.ILLEGAL,
        Applied.APPLIED,
        Applied.APPLIED,
        Applied.ILLEGAL,
    ]
    assert decisions.rows["o1"] == {
        "status": "SHIPPED",
        "failure_reason": "carrier down",
        "ship_attempts": 3,
        "tracking_id": "TRK-1",
    }
    assert [(c.before, c.after) for c in decisions.changes] == [
        (Status.PENDING, Status.PAID),
        (Status.PAID, Status.SHIPPING),
        (Status.SHIPPING, Status.SHIP_FAILED),
        (Status.SHIP_FAILED, Status.SHIPPING),
        (Status.SHIPPING, Status.SHIPPED),
    ]
