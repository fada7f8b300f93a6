"""The OrderPlaced event the reservation appends, atomically with the deduction."""

from __future__ import annotations

import uuid
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from mesh.money import Money
from mesh.telemetry import inject_context
from ordermesh.common.v1 import common_pb2
from ordermesh.events.v1 import events_pb2


def order_placed(
    order_id: str,
    draft: common_pb2.OrderDraft,
    items: list[common_pb2.OrderItem],
    total: Money,
    now: datetime,
) -> events_pb2.Envelope:
    occurred = Timestamp()
    occurred.FromDatetime(now)
    return events_pb2.Envelope(
        event_id=uuid.uuid4().hex,
        order_id=order_id,
        occurred_at=occurred,
        trace_context=inject_context(),
        order_placed=events_pb2.OrderPlaced(draft=draft, items=items, total=total.to_proto()),
    )
