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


class Applied(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # this event was applied (or judged illegal) before
    MISSING = "missing"  # no such order yet: defer, never drop
    ILLEGAL = "illegal"  # recorded and ignored, not applied


class MalformedEvent(ValueError):
    """An event that can never be applied: dead-lettered, not retried."""
