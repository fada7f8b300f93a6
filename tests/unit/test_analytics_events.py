"""Order events as analytics facts (analytics.events): what is read, and what is malformed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from analytics.events import parse
from analytics.facts import Line, MalformedEvent, Placed, Status, StatusChanged
from mesh.money import Money
from ordermesh.common.v1 import common_pb2
from ordermesh.events.v1 import events_pb2
from tests.analytics_support import money, order_placed, status_changed

AT = datetime(2030, 1, 2, 10, 15, 30, 123456, tzinfo=UTC)


def test_an_order_placed_is_the_order_with_its_lines_total_and_initial_status() -> None:
    envelope = order_placed(
        "o1-ab12cd34",
        AT,
        [("sku-1", 2, money(10, 500_000_000)), ("sku-2", 1, money(3))],
        user_id="grace",
        email="Grace@Example.com",
        shipping=money(5),
        initial=common_pb2.AWAITING_REVIEW,
        event_id="e-1",
    )
    event = parse(envelope.SerializeToString())
    assert isinstance(event, Placed)
    assert (event.event_id, event.initial) == ("e-1", Status.AWAITING_REVIEW)
    o = event.order
    assert (o.order_id, o.user_id, o.email, o.created_at) == ("o1-ab12cd34", "grace", "Grace@Example.com", AT)
    assert o.total == Money.of("USD", 29)  # 2 x 10.50 + 3 + 5 shipping
    assert o.lines == (Line("sku-1", 2, Money.of("USD", 10, 500_000_000)), Line("sku-2", 1, Money.of("USD", 3)))
    assert (o.hour, o.day) == (datetime(2030, 1, 2, 10, tzinfo=UTC), AT.date())


def test_an_order_placed_without_an_initial_status_starts_pending_as_in_the_order_context() -> None:
    envelope = order_placed("o0-a", AT, [("sku-1", 1, money(1))], initial=common_pb2.ORDER_STATUS_UNSPECIFIED)
    event = parse(envelope.SerializeToString())
    assert isinstance(event, Placed) and event.initial is Status.PENDING


def test_a_status_change_is_its_new_status_and_time() -> None:
    event = parse(status_changed("o0-a", common_pb2.SHIP_FAILED, AT, event_id="e-9").SerializeToString())
    assert event == StatusChanged("e-9", "o0-a", Status.SHIP_FAILED, AT)


def malformed() -> dict[str, bytes]:
    good = order_placed("o0-a", AT, [("sku-1", 1, money(1))])
    cases: dict[str, events_pb2.Envelope] = {}
    names = ("no time", "no user", "no lines", "two currencies", "zero quantity", "starts paid", "long email", "huge")
    for name in (*names, "negative"):
        cases[name] = events_pb2.Envelope()
        cases[name].CopyFrom(good)
    cases["no time"].ClearField("occurred_at")
    cases["no user"].order_placed.draft.user_id = ""
    del cases["no lines"].order_placed.items[:]
    cases["two currencies"].order_placed.items[0].unit_price.currency_code = "EUR"
    cases["zero quantity"].order_placed.items[0].quantity = 0
    cases["starts paid"].order_placed.draft.initial_status = common_pb2.PAID
    cases["long email"].order_placed.draft.email = "a" * 201
    cases["huge"].order_placed.items[0].quantity = 2**31 - 1
    cases["huge"].order_placed.items[0].unit_price.units = 2**62  # a line of 10^28 dollars
    cases["negative"].order_placed.items[0].unit_price.units = -1
    cases["unknown status"] = status_changed("o0-a", 99, AT)  # type: ignore[arg-type]
    cases["no status"] = status_changed("o0-a", common_pb2.ORDER_STATUS_UNSPECIFIED, AT)
    cases["other event"] = events_pb2.Envelope(
        event_id="e", order_id="o0-a", occurred_at=good.occurred_at, payment_declined=events_pb2.PaymentDeclined()
    )
    cases["bad order id"] = status_changed("o0 a", common_pb2.PAID, AT)
    payloads = {name: envelope.SerializeToString() for name, envelope in cases.items()}
    return payloads | {"not an envelope": b"\xff\xff not protobuf"}


@pytest.mark.parametrize(("case", "payload"), malformed().items())
def test_an_event_the_read_model_cannot_file_is_malformed(case: str, payload: bytes) -> None:
    with pytest.raises(MalformedEvent):
        parse(payload)
