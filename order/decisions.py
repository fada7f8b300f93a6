"""What a batch of status events does to its orders: a pure function.

The store reads what it needs (which events were applied before, each order's
status and shipping attempts), asks ``decide`` and writes the result in one
transaction. Keeping the decisions here, away from SQL, lets the whole
transition table be tested without a database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from order.orders import Applied, CancelReason, Transition
from order.state import Status, allowed


@dataclass(frozen=True)
class Current:
    """What a decision needs of an order's row."""

    status: Status
    ship_attempts: int = 0


@dataclass(frozen=True)
class StatusChange:
    """One applied transition, for history and the status outbox."""

    order_id: str
    before: Status
    after: Status
    reason: str
    tracking_id: str
    cancel_reason: CancelReason | None = None


@dataclass
class Decisions:
    # Each transition's outcome and the status it found (None if none).
    results: list[tuple[Applied, Status | None]] = field(default_factory=list)
    # Order id -> the columns its row gets (status, tracking_id, ...), merged over the batch.
    rows: dict[str, dict[str, object]] = field(default_factory=dict)
    changes: list[StatusChange] = field(default_factory=list)
    # (event id, order id, "applied" or "illegal", detail): every event judged, once.
    judged: list[tuple[str, str, str, str]] = field(default_factory=list)


def decide(transitions: Sequence[Transition], seen: Iterable[str], orders: dict[str, Current]) -> Decisions:
    """Judge each transition in order (a later one sees what an earlier one did):

    - an event judged before is DUPLICATE, and changes nothing;
    - an order not there yet is MISSING (the caller defers it, never drops it);
    - a transition the table forbids, or a guarded one (``only_from``) from another
      status, is ILLEGAL: recorded, not applied;
    - anything else is APPLIED: the new status, its tracking id and failure
      reason, one more shipping attempt for SHIP_FAILED.
    """
    judged = set(seen)
    status = {order_id: current.status for order_id, current in orders.items()}
    attempts = {order_id: current.ship_attempts for order_id, current in orders.items()}
    out = Decisions()
    for t in transitions:
        if t.event_id in judged:
            out.results.append((Applied.DUPLICATE, None))
            continue
        current = status.get(t.order_id)
        if current is None:
            out.results.append((Applied.MISSING, None))
            continue
        judged.add(t.event_id)
        if not allowed(current, t.target) or (t.only_from is not None and current not in t.only_from):
            out.judged.append((t.event_id, t.order_id, "illegal", f"{current} -> {t.target}"))
            out.results.append((Applied.ILLEGAL, current))
            continue
        values = out.rows.setdefault(t.order_id, {})
        values["status"] = t.target.value
        if t.tracking_id:
            values["tracking_id"] = t.tracking_id
        if t.failure_reason:
            values["failure_reason"] = t.failure_reason[:500]
        if t.target is Status.SHIP_FAILED:
            attempts[t.order_id] += 1
            values["ship_attempts"] = attempts[t.order_id]
        status[t.order_id] = t.target
        out.changes.append(StatusChange(t.order_id, current, t.target, t.reason[:500], t.tracking_id, t.cancel_reason))
        out.judged.append((t.event_id, t.order_id, "applied", f"{current} -> {t.target}"))
        out.results.append((Applied.APPLIED, current))
    return out
