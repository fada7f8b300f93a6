"""Orders as the order context knows them (plain data, no SQL or proto types)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from mesh.money import Money
from order.state import Status


@dataclass(frozen=True)
class Item:
    product_id: str
    quantity: int
    unit_price: Money


@dataclass(frozen=True)
class Address:
    street_address: str = ""
    city: str = ""
    state: str = ""
    country: str = ""
    zip_code: str = ""


@dataclass(frozen=True)
class Change:
    status: Status
    at: datetime
    reason: str


@dataclass(frozen=True)
class Order:
    order_id: str
    user_id: str
    request_id: str
    status: Status
    items: tuple[Item, ...]
    total: Money
    shipping_cost: Money
    address: Address
    email: str
    trace_id: str
    created_at: datetime
    updated_at: datetime
    tracking_id: str = ""
    failure_reason: str = ""
    ship_attempts: int = 0
    history: tuple[Change, ...] = field(default_factory=tuple)
    # The traceparent its OrderPlaced carried (set on the way in, stored in
    # order_traces; not read back with the order).
    trace_parent: str = field(default="", compare=False)


class CancelReason(StrEnum):
    """Why an order was cancelled, as a bounded class (a metric label). The
    free text (a customer's words, a reviewer's note, a processor's decline
    reason) stays in ``reason``: it is unbounded, so the class is named where
    the cancellation is decided, never guessed from the text."""

    DECLINED = "declined"  # the card was declined
    PAYMENT_TIMEOUT = "payment_timeout"  # nothing was captured within the payment window
    REVIEW_REJECTED = "review_rejected"
    REVIEW_EXPIRED = "review_expired"  # nobody reviewed it in time
    SHIP_FAILED = "ship_failed"  # shipping failed every attempt and made no shipment
    CUSTOMER = "customer"  # CancelOrder
    OTHER = "other"  # an OrderCancelled event from an actor not listed above


def cancel_reason_of_actor(actor: str) -> CancelReason:
    """The class of an OrderCancelled event, from its free-text ``actor``
    ("user", "expiry", "reconcile", "reviewer", ...: see events.proto)."""
    # "expiry" is left OTHER: it may be the payment window's or the review's.
    words = {
        "user": CancelReason.CUSTOMER,
        "customer": CancelReason.CUSTOMER,
        "reviewer": CancelReason.REVIEW_REJECTED,
        "reconcile": CancelReason.PAYMENT_TIMEOUT,  # reconcile cancels only when the payment window ended
        "payment": CancelReason.DECLINED,
    }
    return words.get(actor.strip().lower(), CancelReason.OTHER)


@dataclass(frozen=True)
class Transition:
    """A requested status change, identified by the event that asks for it."""

    order_id: str
    event_id: str
    target: Status
    reason: str
    tracking_id: str = ""
    failure_reason: str = ""
    # The event only makes sense from these states (a PaymentDeclined must not
    # cancel a PAID order even though PAID -> CANCELLED is a legal transition).
    only_from: frozenset[Status] | None = None
    # For a cancellation: its class (counted by reason in the metrics); None is OTHER.
    cancel_reason: CancelReason | None = None


class Applied(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # this event was applied (or judged illegal) before
    MISSING = "missing"  # no such order yet: defer, never drop
    ILLEGAL = "illegal"  # recorded and ignored, not applied


class MalformedEvent(ValueError):
    """An event that can never be applied: dead-lettered, not retried."""
