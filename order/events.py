"""Events in and out of the order context: parsing (in) and building (out)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from mesh.money import Money
from mesh.telemetry import inject_context, traceparent
from order.orders import Address, CancelReason, Item, MalformedEvent, Order, Transition, cancel_reason_of_actor
from order.state import INITIAL, Status
from ordermesh.common.v1 import common_pb2
from ordermesh.events.v1 import events_pb2

PAYABLE = frozenset({Status.PENDING})
REVIEWABLE = frozenset({Status.AWAITING_REVIEW})


def parse(payload: bytes) -> events_pb2.Envelope:
    try:
        envelope = events_pb2.Envelope.FromString(payload)
    except DecodeError as error:
        raise MalformedEvent(f"undecodable envelope: {error}") from None
    if not envelope.order_id or not envelope.event_id:
        raise MalformedEvent("envelope without order_id or event_id")
    return envelope


def placed_order(envelope: events_pb2.Envelope) -> Order:
    """The order row an OrderPlaced event describes (every field kept)."""
    if envelope.WhichOneof("payload") != "order_placed":
        raise MalformedEvent(f"expected OrderPlaced, got {envelope.WhichOneof('payload')}")
    placed = envelope.order_placed
    draft = placed.draft
    if not draft.user_id or not placed.items or not placed.total.currency_code:
        raise MalformedEvent(f"OrderPlaced {envelope.order_id} lacks user, items or total")
    status = Status(common_pb2.OrderStatus.Name(draft.initial_status)) if draft.initial_status else Status.PENDING
    if status not in INITIAL:
        raise MalformedEvent(f"OrderPlaced {envelope.order_id} starts in {status}")
    created = envelope.occurred_at.ToDatetime(tzinfo=UTC) if envelope.HasField("occurred_at") else datetime.now(UTC)
    total = Money.from_proto(placed.total)
    shipping = Money.from_proto(draft.shipping_cost) if draft.shipping_cost.currency_code else Money(total.currency, 0)
    a = draft.address
    return Order(
        order_id=envelope.order_id,
        user_id=draft.user_id,
        request_id=draft.request_id,
        status=status,
        items=tuple(Item(i.product_id, i.quantity, Money.from_proto(i.unit_price)) for i in placed.items),
        total=total,
        shipping_cost=shipping,
        address=Address(a.street_address, a.city, a.state, a.country, a.zip_code),
        email=draft.email,
        trace_id=_trace_id(envelope),
        created_at=created,
        updated_at=created,
        trace_parent=traceparent(envelope.trace_context),
    )


def transition(envelope: events_pb2.Envelope) -> Transition:
    """The status change a payment/cancel/review event asks for."""
    kind = envelope.WhichOneof("payload")
    order_id, event_id = envelope.order_id, envelope.event_id
    if kind == "payment_captured":
        return Transition(order_id, event_id, Status.PAID, "payment captured", only_from=PAYABLE)
    if kind == "payment_declined":
        reason = envelope.payment_declined.reason or "payment declined"
        return Transition(
            order_id,
            event_id,
            Status.CANCELLED,
            reason,
            failure_reason=reason,
            only_from=PAYABLE | REVIEWABLE,
            cancel_reason=CancelReason.DECLINED,
        )
    if kind == "order_cancelled":
        cancelled = envelope.order_cancelled
        reason = cancelled.reason or "cancelled"
        return Transition(
            order_id,
            event_id,
            Status.CANCELLED,
            reason,
            failure_reason=reason,
            cancel_reason=cancel_reason_of_actor(cancelled.actor),
        )
    if kind == "order_reviewed":
        review = envelope.order_reviewed
        if review.approved:
            return Transition(
                order_id, event_id, Status.PENDING, f"approved by {review.reviewer}", only_from=REVIEWABLE
            )
        reason = f"rejected by {review.reviewer}" + (f": {review.note}" if review.note else "")
        return Transition(
            order_id,
            event_id,
            Status.CANCELLED,
            reason,
            failure_reason=reason,
            only_from=REVIEWABLE,
            cancel_reason=CancelReason.REVIEW_REJECTED,
        )
    raise MalformedEvent(f"no status change for a {kind} event")


def status_changed(order_id: str, before: Status | None, after: Status, reason: str, tracking_id: str) -> bytes:
    occurred = Timestamp()
    occurred.FromDatetime(datetime.now(UTC))
    return events_pb2.Envelope(
        event_id=uuid.uuid4().hex,
        order_id=order_id,
        occurred_at=occurred,
        trace_context=inject_context(),
        order_status_changed=events_pb2.OrderStatusChanged(
            from_status=common_pb2.OrderStatus.Value(before.value if before else "ORDER_STATUS_UNSPECIFIED"),
            to_status=common_pb2.OrderStatus.Value(after.value),
            reason=reason,
            tracking_id=tracking_id,
        ),
    ).SerializeToString()


def _trace_id(envelope: events_pb2.Envelope) -> str:
    parent = envelope.trace_context.get("traceparent", "")
    parts = parent.split("-")
    return parts[1] if len(parts) == 4 else ""
