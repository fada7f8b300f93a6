"""Events in: OrderPlaced and OrderStatusChanged envelopes as analytics facts.

Stricter than the order context on one point: an event without ``occurred_at``
is malformed here. The read model files every order under its creation hour
and orders status changes by their time; a time guessed on arrival would put
the order in the wrong bucket, and differently on every replay.
"""

from __future__ import annotations

from datetime import UTC

from google.protobuf.message import DecodeError

from analytics.facts import INITIAL, Event, Line, MalformedEvent, Order, Placed, Status, StatusChanged
from common.checks import CURRENCY, ID_PATTERN
from mesh.money import NANOS_PER_UNIT, Money
from ordermesh.common.v1 import common_pb2
from ordermesh.events.v1 import events_pb2

# The widths of the read model's columns (analytics/models.py), which are the
# order context's: an event that does not fit fails alone instead of failing
# its whole batch at the INSERT.
MAX_USER_ID = 128
MAX_EMAIL = 200
# Far above any real order, and far below what the sums' BIGINT columns hold
# (9.2 * 10^18 units): an amount beyond it is a broken event, refused alone.
MAX_UNITS = 10**15


def parse(payload: bytes) -> Event:
    try:
        envelope = events_pb2.Envelope.FromString(payload)
    except DecodeError as error:
        raise MalformedEvent(f"undecodable envelope: {error}") from None
    if not ID_PATTERN.match(envelope.order_id) or not 0 < len(envelope.event_id) <= 64:
        raise MalformedEvent("envelope without a valid order_id or event_id")
    if not envelope.HasField("occurred_at"):
        raise MalformedEvent(f"event {envelope.event_id} of order {envelope.order_id} has no occurred_at")
    kind = envelope.WhichOneof("payload")
    if kind == "order_placed":
        return _placed(envelope)
    if kind == "order_status_changed":
        return _status_changed(envelope)
    raise MalformedEvent(f"expected OrderPlaced or OrderStatusChanged, got {kind}")


def _placed(envelope: events_pb2.Envelope) -> Placed:
    placed, draft = envelope.order_placed, envelope.order_placed.draft
    order_id = envelope.order_id
    if not 0 < len(draft.user_id) <= MAX_USER_ID or len(draft.email) > MAX_EMAIL:
        raise MalformedEvent(f"OrderPlaced {order_id}: user_id or email missing or too long")
    if not CURRENCY.match(placed.total.currency_code) or not placed.items:
        raise MalformedEvent(f"OrderPlaced {order_id} lacks items or a total")
    total = Money.from_proto(placed.total)
    lines = tuple(_line(order_id, item, total.currency) for item in placed.items)
    if not all(_sane(amount) for amount in (total, *(line.revenue for line in lines))):
        raise MalformedEvent(f"OrderPlaced {order_id}: an amount is negative or above {MAX_UNITS} units")
    initial = _status(draft.initial_status) if draft.initial_status else Status.PENDING
    if initial not in INITIAL:
        raise MalformedEvent(f"OrderPlaced {order_id} starts in {initial}")
    created = envelope.occurred_at.ToDatetime(tzinfo=UTC)
    order = Order(order_id, draft.user_id, draft.email, total, created, lines)
    return Placed(envelope.event_id, order, initial)


def _line(order_id: str, item: common_pb2.OrderItem, currency: str) -> Line:
    if not ID_PATTERN.match(item.product_id) or item.quantity < 1:
        raise MalformedEvent(f"OrderPlaced {order_id}: a line needs a product id and a quantity of 1 or more")
    price = Money.from_proto(item.unit_price)
    if price.currency != currency:
        raise MalformedEvent(f"OrderPlaced {order_id}: {item.product_id} priced in {price.currency}, not {currency}")
    return Line(item.product_id, item.quantity, price)


def _sane(amount: Money) -> bool:
    return 0 <= amount.nanos_total < MAX_UNITS * NANOS_PER_UNIT


def _status_changed(envelope: events_pb2.Envelope) -> StatusChanged:
    status = _status(envelope.order_status_changed.to_status)
    return StatusChanged(envelope.event_id, envelope.order_id, status, envelope.occurred_at.ToDatetime(tzinfo=UTC))


def _status(value: int) -> Status:
    try:
        return Status(common_pb2.OrderStatus.Name(value))  # type: ignore[arg-type]
    except ValueError:
        raise MalformedEvent(f"unknown order status {value}") from None
