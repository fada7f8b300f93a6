"""Order events as the analytics context receives them (for its unit and integration tests)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from ordermesh.common.v1 import common_pb2
from ordermesh.events.v1 import events_pb2


def money(units: int, nanos: int = 0, currency: str = "USD") -> common_pb2.Money:
    return common_pb2.Money(currency_code=currency, units=units, nanos=nanos)


def stamp(at: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(at)
    return value


def order_placed(
    order_id: str,
    at: datetime,
    lines: Sequence[tuple[str, int, common_pb2.Money]],
    *,
    user_id: str = "ada",
    email: str = "ada@example.com",
    shipping: common_pb2.Money | None = None,
    initial: common_pb2.OrderStatus.ValueType = common_pb2.PENDING,
    event_id: str = "",
) -> events_pb2.Envelope:
    """OrderPlaced as the catalog appends it: the total is the lines plus shipping."""
    items = [common_pb2.OrderItem(product_id=p, quantity=q, unit_price=price) for p, q, price in lines]
    currency = lines[0][2].currency_code
    shipping = shipping or money(0, currency=currency)
    nanos = sum(q * (price.units * 10**9 + price.nanos) for _, q, price in lines)
    nanos += shipping.units * 10**9 + shipping.nanos
    return events_pb2.Envelope(
        event_id=event_id or uuid.uuid4().hex,
        order_id=order_id,
        occurred_at=stamp(at),
        order_placed=events_pb2.OrderPlaced(
            draft=common_pb2.OrderDraft(
                request_id=f"r-{order_id}",
                user_id=user_id,
                email=email,
                shipping_cost=shipping,
                initial_status=initial,
            ),
            items=items,
            total=money(nanos // 10**9, nanos % 10**9, currency),
        ),
    )


def status_changed(
    order_id: str, to: common_pb2.OrderStatus.ValueType, at: datetime, *, event_id: str = ""
) -> events_pb2.Envelope:
    """OrderStatusChanged as the order outbox relays it."""
    return events_pb2.Envelope(
        event_id=event_id or uuid.uuid4().hex,
        order_id=order_id,
        occurred_at=stamp(at),
        order_status_changed=events_pb2.OrderStatusChanged(to_status=to, reason="test"),
    )
