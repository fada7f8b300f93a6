"""Payment outcomes as events for the order context.

Event ids are derived from the order id, so a re-run of the saga (a takeover
after a crash) publishes the same event id and the order context applies it once.
"""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from mesh.money import Money
from mesh.telemetry import inject_context
from ordermesh.events.v1 import events_pb2


def _envelope(order_id: str, kind: str, now: datetime) -> events_pb2.Envelope:
    occurred = Timestamp()
    occurred.FromDatetime(now)
    return events_pb2.Envelope(
        event_id=f"{order_id}:{kind}", order_id=order_id, occurred_at=occurred, trace_context=inject_context()
    )


def payment_captured(order_id: str, transaction_id: str, amount: Money, now: datetime) -> events_pb2.Envelope:
    envelope = _envelope(order_id, "payment", now)
    envelope.payment_captured.CopyFrom(
        events_pb2.PaymentCaptured(transaction_id=transaction_id, amount=amount.to_proto())
    )
    return envelope


def payment_declined(order_id: str, reason: str, now: datetime) -> events_pb2.Envelope:
    envelope = _envelope(order_id, "payment", now)
    envelope.payment_declined.CopyFrom(events_pb2.PaymentDeclined(reason=reason))
    return envelope
