"""What the read model knows of an order, and the events that tell it. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from mesh.money import Money


class MalformedEvent(Exception):
    """An event this context cannot read: it fails alone (and is dead-lettered in the end)."""


class Status(StrEnum):
    """The order statuses (``common.v1.OrderStatus`` names). The order context owns
    the state machine; here a status is only a label, so there is no transition table."""

    AWAITING_REVIEW = "AWAITING_REVIEW"
    PENDING = "PENDING"
    PAID = "PAID"
    SHIPPING = "SHIPPING"
    SHIP_FAILED = "SHIP_FAILED"
    SHIPPED = "SHIPPED"
    CANCELLED = "CANCELLED"


INITIAL = frozenset({Status.PENDING, Status.AWAITING_REVIEW})
# No transition leaves these in the order state machine.
FINAL = frozenset({Status.SHIPPED, Status.CANCELLED})
# The state machine's forward order: only breaks a tie of two changes stamped
# with the same microsecond (see Stamp).
_PROGRESS = {
    Status.AWAITING_REVIEW: 0,
    Status.PENDING: 1,
    Status.PAID: 2,
    Status.SHIPPING: 3,
    Status.SHIP_FAILED: 4,
    Status.SHIPPED: 5,
    Status.CANCELLED: 5,
}


@dataclass(frozen=True, order=True)
class Stamp:
    """Orders the status changes of one order; the greatest stands.

    The time the order context made the change decides, so a change that
    arrives late (the outbox relays every shard into one stream; redelivery
    reorders) never replaces a newer one. A final status beats any non-final
    one whatever the times: the state machine cannot leave it, so a later
    stamp on a non-final change can only be two order replicas' clocks
    disagreeing. Progress, then the event id, break exact ties, so the
    outcome never depends on the order of arrival."""

    final: bool
    at: datetime
    progress: int
    event_id: str

    @classmethod
    def of(cls, status: Status, at: datetime, event_id: str) -> Stamp:
        return cls(status in FINAL, at, _PROGRESS[status], event_id)


@dataclass(frozen=True)
class Line:
    product_id: str
    quantity: int
    unit_price: Money

    @property
    def revenue(self) -> Money:
        return self.unit_price.times(self.quantity)


@dataclass(frozen=True)
class Order:
    """An order as its OrderPlaced described it (what never changes)."""

    order_id: str
    user_id: str
    email: str
    total: Money
    created_at: datetime
    lines: tuple[Line, ...]

    @property
    def hour(self) -> datetime:
        return self.created_at.replace(minute=0, second=0, microsecond=0)

    @property
    def day(self) -> date:
        return self.created_at.date()


@dataclass(frozen=True)
class Placed:
    """OrderPlaced (the catalog's reservation)."""

    event_id: str
    order: Order
    initial: Status

    @property
    def order_id(self) -> str:
        return self.order.order_id


@dataclass(frozen=True)
class StatusChanged:
    """OrderStatusChanged (the order context's outbox)."""

    event_id: str
    order_id: str
    status: Status
    at: datetime

    @property
    def stamp(self) -> Stamp:
        return Stamp.of(self.status, self.at, self.event_id)


Event = Placed | StatusChanged

# The event id in the stamp of a status a backfill set (``order_index.status_event``):
# marks the entries whose status was read from an order shard, not taken from an event.
BACKFILL = "backfill"


@dataclass(frozen=True)
class Backfilled:
    """An order as its order shard holds it (``python -m analytics backfill``): what
    its OrderPlaced said, and its status now, stamped with the time the order
    context recorded that change (the order's newest history row of that status).

    Not an event: there is no id to record, and none is needed. It is taken like
    an OrderPlaced followed by a status change (analytics.projection): the order
    is placed once, and the status stands only while no newer change is known,
    so taking it twice, or before or after the events, counts nothing twice."""

    order: Order
    status: Status
    at: datetime

    @property
    def order_id(self) -> str:
        return self.order.order_id

    @property
    def stamp(self) -> Stamp:
        return Stamp.of(self.status, self.at, BACKFILL)


Fact = Event | Backfilled


@dataclass(frozen=True)
class Entry:
    """One order in the read model: its current status, and the order once its
    OrderPlaced has arrived (a status change can come first: the two events
    travel on different streams)."""

    order_id: str
    status: Status
    stamp: Stamp | None  # of the change that set ``status``; None: the OrderPlaced's initial status
    order: Order | None = None
